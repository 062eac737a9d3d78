"""The shared training loop: an interrupted run resumed from its `.partial` state ends with the
weights of an uninterrupted one (shuffle and dropout are drawn per epoch, not carried over)."""
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pipeline.core.training import TrainingDiverged, fit

CFG = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 0.0, "momentum": 0.9, "poly_power": 0.9,
       "epochs": 3, "batch_size": 4}


class _Net(torch.nn.Module):
    """Dropout draws from torch's global generator, as the backbones' dropout does."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.body(x)

    def param_groups(self):
        return [{"params": list(self.parameters()), "lr_mult": 1.0}]


def _run(partial, interrupt_at=None):
    torch.manual_seed(0)
    model = _Net()
    data = TensorDataset(torch.randn(12, 5), torch.randn(12, 1))
    loader = DataLoader(data, batch_size=CFG["batch_size"], shuffle=True,
                        generator=torch.Generator().manual_seed(0))

    def loss(model, batch, device):
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    def on_epoch(epoch):
        if epoch == interrupt_at:
            raise KeyboardInterrupt

    history = fit(model, loader, loss, CFG, partial, {"run": 1}, "cpu", "test", on_epoch=on_epoch, seed=7)
    return model.state_dict(), history


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    whole, whole_history = _run(tmp_path / "whole.partial")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "cut.partial", interrupt_at=2)
    assert torch.load(tmp_path / "cut.partial", weights_only=True)["epoch"] == 2
    resumed, resumed_history = _run(tmp_path / "cut.partial")
    assert resumed_history == whole_history
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_a_loss_above_its_start_for_patience_epochs_stops_training(tmp_path):
    """Epoch means 1, 2, 3, 4 against a first loss of 1: epochs 2, 3 and 4 are above it, so the run
    stops after epoch 4 (PATIENCE = 3), keeping that state; a dip back to the start resets the count."""
    def run(levels, partial):
        torch.manual_seed(0)
        model = _Net()
        data = TensorDataset(torch.randn(8, 5), torch.randn(8, 1))
        loader = DataLoader(data, batch_size=4)
        epoch = {"n": 0}

        def loss(model, batch, device):   # the model's output times 0: a loss of the value set per epoch
            return (model(batch[0]) * 0).mean() + levels[epoch["n"]]
        return fit(model, loader, loss, {**CFG, "epochs": len(levels)}, partial, {"run": 2}, "cpu", "test",
                   on_epoch=lambda e: epoch.update(n=e))

    with pytest.raises(TrainingDiverged, match=r"test mean loss has stayed above its starting value 1 for 3 "
                                               r"epochs \(epoch 4: 4\).*lower test.lr.*kept at .*grow.partial"):
        run([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], tmp_path / "grow.partial")
    assert torch.load(tmp_path / "grow.partial", weights_only=True)["epoch"] == 4
    history = run([1.0, 2.0, 3.0, 1.0, 2.0, 3.0], tmp_path / "dip.partial")   # never 3 in a row
    assert [h["loss"] for h in history] == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
