"""Mixed precision (`amp` in config.yaml): the dtype the networks' forward passes run in, and the
habits of a CUDA job (pinned host memory, non-blocking copies, channels-last convolutions).

`amp`: `auto` is bfloat16 on a GPU that has it (Ampere and later), float16 on an older GPU, and
off (float32) on the CPU; `bf16`, `fp16` and `off` are taken as asked (bf16 and fp16 also run on
the CPU, which is how the tests compare them with float32 here).

Only the networks run in the lower precision: a stage sets the precision once (`mixed_precision`)
and each network call sits in `autocast(device)`. Everything the network's output feeds (losses,
CAM sums and normalisation, the random walk's sparse products, softmax averages) is cast back to
float32 first, so a loss of `log(1 + 1e-5 - a)` or a sum over scales is never rounded to bf16's
8 bits. float16 training scales the loss (`grad_scaler`), as float16's range needs; bfloat16 has
float32's range and needs no scaling."""
from __future__ import annotations

import contextlib
import contextvars

import torch

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
NAMES = {dtype: name for name, dtype in DTYPES.items()}

_DTYPE: contextvars.ContextVar[torch.dtype | None] = contextvars.ContextVar("amp_dtype", default=None)


def resolve_amp(amp: str, device) -> torch.dtype | None:
    """The autocast dtype for config key `amp` on `device`, or None for float32."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp '{amp}' is unknown; expected one of {list(AMP_CHOICES)}")
    device = torch.device(device)
    if amp == "off":
        return None
    cuda = device.type == "cuda"
    if amp == "auto":
        if not cuda:
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise RuntimeError(f"amp 'bf16' asked for, but {torch.cuda.get_device_name(device)} has no bfloat16; "
                           "set amp: fp16 (or auto, which picks it) or off in config.yaml")
    return DTYPES[amp]


def amp_name(dtype: torch.dtype | None) -> str:
    """'bf16', 'fp16' or 'off': how reports and logs name a precision."""
    return NAMES.get(dtype, "off")


@contextlib.contextmanager
def mixed_precision(dtype: torch.dtype | None):
    """The precision of every `autocast` inside the block (a stage sets it once around its work)."""
    token = _DTYPE.set(dtype)
    try:
        yield
    finally:
        _DTYPE.reset(token)


def current_amp() -> torch.dtype | None:
    return _DTYPE.get()


def autocast(device):
    """The block a network's forward pass runs in: torch.autocast in the stage's precision on
    `device`'s kind, or nothing when the precision is float32."""
    dtype = _DTYPE.get()
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def full_precision(device):
    """A block inside `autocast` that runs in float32 again (e.g. a product of network outputs
    whose result is a map, not a feature)."""
    if _DTYPE.get() is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, enabled=False)


def grad_scaler(device) -> torch.amp.GradScaler:
    """Loss scaling for float16 training (a disabled scaler, which passes everything through, for
    bfloat16 and float32)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=_DTYPE.get() is torch.float16)


def channels_last(device) -> bool:
    """Convolutions in NHWC on a GPU in mixed precision, the layout its tensor cores read without
    a transpose; the CPU keeps NCHW (its float32 kernels gain nothing measurable here)."""
    return torch.device(device).type == "cuda" and _DTYPE.get() is not None


def prepare_model(model: torch.nn.Module, device) -> torch.nn.Module:
    """The model on `device`, channels-last where that helps (channels_last)."""
    model.to(device)
    if channels_last(device):
        model.to(memory_format=torch.channels_last)
    return model


def to_device(x: torch.Tensor, device) -> torch.Tensor:
    """A batch onto `device`: non-blocking from pinned memory on CUDA, image batches (4-D)
    channels-last where the model is."""
    device = torch.device(device)
    if x.dim() == 4 and channels_last(device):
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=device.type == "cuda")


def pin_memory(device) -> bool:
    """DataLoader(pin_memory=...): page-locked batches on CUDA, so copies overlap the compute."""
    return torch.device(device).type == "cuda"
