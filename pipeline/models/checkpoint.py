"""Reading this project's checkpoints: weights only (no pickle), and an unreadable file is an error
that names it."""
from __future__ import annotations

import torch


class CheckpointError(ValueError):
    """A checkpoint is unreadable, of another kind, or does not fit what config asks for (backbone,
    classes, shapes); the message names the file."""


def read_checkpoint(path, what: str) -> dict:
    """torch.load(weights_only=True) of a {'state_dict', 'meta'} checkpoint; `what` names the kind
    expected, for the messages."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} checkpoint {path} does not exist") from None
    except Exception as exc:  # truncated zip, not a torch file, a pickle weights_only refuses
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"cannot read {what} checkpoint {path} ({reason}): truncated or not a checkpoint "
                         "of this project; delete it and rerun the stage that writes it") from exc
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("meta"), dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a {what} checkpoint of this project (no 'meta'/'state_dict')")
    return ckpt


def load_network(path, what: str, marker: str, build, expected_backbone: str | None, section: str):
    """A checkpoint of one of the project's networks, rebuilt from its metadata: `marker` is a metadata
    key only that network records, `build(meta)` the network; the backbone must be the one config
    asks for (config key section.backbone). Returns (network, meta); a wrong file is a CheckpointError."""
    ckpt = read_checkpoint(path, what)
    meta = ckpt["meta"]
    if marker not in meta:
        raise CheckpointError(f"{path} is not an {what} checkpoint of this project (its metadata has no "
                              f"'{marker}': another network's checkpoint?)")
    if expected_backbone and meta["backbone"] != expected_backbone:
        raise CheckpointError(f"{path} was trained with backbone '{meta['backbone']}', but config asks for "
                              f"'{expected_backbone}'; retrain the {what} or fix {section}.backbone")
    model = build(meta)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the {what} its metadata describes "
                              f"({str(exc).splitlines()[0]}): retrain it") from exc
    return model, meta
