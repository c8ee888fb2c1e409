"""On-disk caches: teacher logits, neighbour tables. Keyed by content, written atomically."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

CACHE_ENV = "AUGPRO_CACHE"


def cache_dir() -> Path:
    """``$AUGPRO_CACHE`` or ``~/.cache/augpro``."""
    path = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "augpro")
    path.mkdir(parents=True, exist_ok=True)
    return path


def fingerprint(*parts: object) -> str:
    """A short content hash of strings, numbers, nested lists and tensors."""
    h = hashlib.sha256()

    def feed(obj: object) -> None:
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            # the raw bytes through the buffer protocol: no copy (a 47 MB table stays 47 MB)
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else b"")
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for x in obj:
                feed(x)
            h.update(b"]")
        else:
            h.update(repr(obj).encode())
            h.update(b"\0")

    for p in parts:
        feed(p)
    return h.hexdigest()[:20]


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write a safetensors file via a temporary file and rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_tensor(kind: str, key: str, compute: Callable[[], torch.Tensor], enabled: bool = True) -> torch.Tensor:
    """Load ``kind/key.safetensors`` from the cache, or compute, store and return it."""
    if not enabled:
        return compute()
    path = cache_dir() / kind / f"{key}.safetensors"
    if path.is_file():
        try:
            return load_file(path)["value"]
        except Exception:  # a corrupt entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    value = compute()
    try:
        atomic_save_tensors({"value": value}, path)
    except OSError:
        pass  # a read-only cache is not an error; the value is still correct
    return value
