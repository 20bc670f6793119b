"""Which float format the matrix products run in: fp32, bf16 (torch.autocast), or auto.

bf16 pays only where the hardware multiplies bfloat16 natively: CUDA GPUs that support it, and CPUs
with AVX512-BF16 or AMX (oneDNN's check). Elsewhere oneDNN emulates it (slower than fp32), and its
fused LSTM kernel refuses bf16 altogether, so ``auto`` means bf16 there and fp32 everywhere else.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` multiplies bfloat16 natively."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: str | torch.device = "cpu") -> str:
    """'auto' -> 'bf16' where ``device`` has native bfloat16, else 'fp32'; 'fp32'/'bf16' unchanged."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return name


def training_precision(name: str, device: str | torch.device = "cpu") -> str:
    """``resolve_precision`` for training steps: bf16 where the device has no native bfloat16 is an error,
    since torch's fused LSTM kernel refuses it on such CPUs (and emulation is slower than fp32 anyway)."""
    precision = resolve_precision(name, device)
    if precision == "bf16" and not native_bf16(device):
        raise ValueError(f"precision=bf16 but device {str(device)!r} has no native bfloat16 (a CPU needs "
                         "AVX512-BF16 or AMX): use precision=auto or precision=fp32")
    return precision
