"""Device and dtype arguments, read one way everywhere: the library never picks an accelerator itself."""

from __future__ import annotations

import torch

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Map None / "fp32" / "fp16" / "bf16" / a floating torch.dtype to a torch.dtype (None -> float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype={dtype} must be one of torch.float32, torch.float16, torch.bfloat16")
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise ValueError(f"dtype={dtype!r} must be None, a torch dtype or one of {sorted(DTYPES)}")


DEVICE_FORMS = "cpu, cuda, cuda:N (N = GPU index), mps"


def check_device_available(device: torch.device, name: str = "device") -> torch.device:
    """Refuse a device this machine cannot run on, naming why and what to use instead (torch's own errors
    come late and mislead, e.g. a pin_memory error for a CUDA device on a CPU-only build)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch built without CUDA" if not torch.backends.cuda.is_built() else "no GPU visible"
            raise ValueError(
                f"{name}={str(device)!r}: CUDA is not available on this machine ({why}); use {name}='cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{name}={str(device)!r}: this machine has {count} CUDA device(s), indices 0..{count - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={str(device)!r}: MPS is not available on this machine; use {name}='cpu'")
    return device


def resolve_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """None -> cpu; the library never picks an accelerator on its own (the host layer does). A string that
    is no device, or a device this machine lacks, is refused naming ``name``, the value and the valid
    forms."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        return check_device_available(device, name)
    if not isinstance(device, str):
        raise TypeError(
            f"{name}={device!r} must be None, a str or a torch.device, got {type(device).__name__}"
        )
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name}={device!r} is not a torch device; valid forms: {DEVICE_FORMS}") from None
    return check_device_available(parsed, name)
