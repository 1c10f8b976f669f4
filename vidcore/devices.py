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


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> cpu; the library never picks an accelerator on its own (the host layer does)."""
    if device is None:
        return torch.device("cpu")
    if isinstance(device, (str, torch.device)):
        return torch.device(device)
    raise TypeError(f"device={device!r} must be None, a str or a torch.device, got {type(device).__name__}")
