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
