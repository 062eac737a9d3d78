"""The shared training loop on CUDA: a run interrupted after an epoch resumes on the GPU (the
optimizer's momentum, loaded from the CPU checkpoint, follows the parameters onto the GPU) and
ends with the weights of an uninterrupted run, in each mixed precision."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.core.precision import mixed_precision
from pipeline.core.training import fit

CFG = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0, "momentum": 0.9, "poly_power": 0.9,
       "epochs": 3, "batch_size": 4}


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.body(x)

    def param_groups(self):
        return [{"params": list(self.parameters()), "lr_mult": 1.0}]


def _run(partial, dtype, interrupt_at=None):
    torch.manual_seed(0)
    model = _Net()
    data = TensorDataset(torch.randn(12, 3, 16, 16), torch.randn(12, 1))
    loader = DataLoader(data, batch_size=CFG["batch_size"], shuffle=True, generator=torch.Generator().manual_seed(0))

    def loss(model, batch, device):
        x, y = (t.to(device) for t in batch)
        return ((model(x).float() - y) ** 2).mean()

    def on_epoch(epoch):
        if epoch == interrupt_at:
            raise KeyboardInterrupt

    with mixed_precision(dtype):
        history = fit(model, loader, loss, CFG, partial, {"run": 1}, torch.device("cuda"), "test",
                      on_epoch=on_epoch, seed=3)
    return {k: v.float().cpu() for k, v in model.state_dict().items()}, history


@pytest.mark.parametrize("dtype", [None, torch.bfloat16, torch.float16])
def test_an_interrupted_cuda_run_resumes_on_the_gpu(tmp_path, dtype):
    whole, whole_history = _run(tmp_path / "whole.partial", dtype)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut.partial", dtype, interrupt_at=2)
    resumed, resumed_history = _run(tmp_path / "cut.partial", dtype)
    assert len(resumed_history) == 3
    for key in whole:
        assert torch.allclose(whole[key], resumed[key], atol=1e-4), key
