"""Whether a device runs bf16 natively (fast) or only emulates it (slower than fp32).

Used to resolve ``bf16_teacher`` when a run leaves it to its defaults version (see
:meth:`augpro.config.TrainConfig.resolved_bf16_teacher`).
"""

from __future__ import annotations

import contextlib
import inspect

import torch


def native_bf16(device: torch.device | str) -> bool:
    """True when ``device`` has native bf16 arithmetic, so that bf16 autocast beats fp32.

    * ``cuda``: :func:`torch.cuda.is_bf16_supported` for that GPU, not counting emulation
      (bf16 tensor cores: Ampere and newer);
    * ``cpu``: AVX512-BF16 or AMX tiles (torch's private ``torch.cpu._is_avx512_bf16_supported``
      and ``torch.cpu._is_amx_tile_supported``; False where this torch lacks them);
    * any other device (``mps``, ...): False.
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False
        check = torch.cuda.is_bf16_supported
        # no index: the current GPU
        with torch.cuda.device(dev.index) if dev.index is not None else contextlib.nullcontext():
            if "including_emulation" in inspect.signature(check).parameters:
                return bool(check(including_emulation=False))
            return bool(check())
    if dev.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        probes = (getattr(cpu, "_is_avx512_bf16_supported", None), getattr(cpu, "_is_amx_tile_supported", None))
        return any(bool(probe()) for probe in probes if probe is not None)
    return False
