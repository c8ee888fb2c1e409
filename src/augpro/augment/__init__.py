"""Augmenters for distillation, one interface (:class:`~augpro.augment.base.Augmenter`).

Use :func:`build_augmenter` to make one by name; ``METHODS`` lists the names.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from augpro.augment.augpro import AugProFGSM, AugProMix
from augpro.augment.base import AugmentContext, AugmentedBatch, Augmenter, PrepareContext
from augpro.augment.interpolate import FGSM, MixKD
from augpro.augment.replace import TokenReplacement
from augpro.errors import UserError


def _text(cls_name: str) -> Callable[..., Augmenter]:
    def make(**kw: Any) -> Augmenter:
        from augpro.augment import text

        cls = getattr(text, cls_name)
        return cls(degree=0.1 if kw.get("degree") is None else kw["degree"])

    return make


def _replace(method: str) -> Callable[..., Augmenter]:
    def make(**kw: Any) -> Augmenter:
        return TokenReplacement(method=method, degree=0.3 if kw.get("degree") is None else kw["degree"],
                                knn_k=kw.get("knn_k", 16), embedding_table=kw.get("embedding_table"))

    return make


_FACTORIES: dict[str, Callable[..., Augmenter]] = {
    "knn": _replace("knn"),
    "mask": _replace("mask"),
    "random": _replace("random"),
    "synonym": _text("SynonymReplacement"),
    "eda": _text("EDA"),
    "mixkd": lambda **kw: MixKD(alpha=kw.get("alpha", 0.4), granularity=kw.get("granularity", "sequence")),
    "fgsm": lambda **kw: FGSM(eps=kw.get("eps") if kw.get("eps") is not None else 1.0),
    "augpro-mix": lambda **kw: AugProMix(alpha=kw.get("alpha", 0.4), granularity=kw.get("granularity", "sequence"),
                                         degree=kw.get("degree"),
                                         projection_table=kw.get("projection_table") or "teacher"),
    "augpro-fgsm": lambda **kw: AugProFGSM(eps=kw.get("eps") if kw.get("eps") is not None else 4.0,
                                           degree=kw.get("degree"),
                                           projection_table=kw.get("projection_table") or "student"),
}

#: every augmentation method, plus ``none``
METHODS: tuple[str, ...] = ("none", *_FACTORIES)
#: methods that run per batch on the live models (the others build an offline pool)
LIVE_METHODS = ("mixkd", "fgsm", "augpro-mix", "augpro-fgsm")


def build_augmenter(method: str, *, degree: float | None = None, embedding_table: torch.Tensor | None = None,
                    **options: Any) -> Augmenter | None:
    """An augmenter by name (``None`` for ``"none"``).

    Args:
        method: one of :data:`METHODS`.
        degree: share of changed tokens (replacement/EDA/synonym: default 0.3/0.1/0.1; AugPro:
            ``None`` = plain projection). Must lie in [0, 1].
        embedding_table: the teacher's word-embedding table (``knn`` neighbours).
        options: ``alpha``, ``granularity``, ``eps``, ``projection_table``, ``knn_k``.
    """
    key = method.strip().lower()
    if key == "none":
        return None
    if key not in _FACTORIES:
        raise UserError(f"unknown augmentation method {method!r}; choose from {', '.join(METHODS)}")
    if degree is not None and not 0.0 <= degree <= 1.0:
        raise UserError(f"--degree must be in [0, 1], got {degree}")
    if degree is not None and key in ("mixkd", "fgsm"):
        raise UserError(f"--degree does not apply to {key} (virtual embeddings change no tokens); "
                        "use augpro-mix/augpro-fgsm or a replacement method")
    return _FACTORIES[key](degree=degree, embedding_table=embedding_table,
                           **{k: v for k, v in options.items() if v is not None})


__all__ = ["Augmenter", "AugmentContext", "AugmentedBatch", "PrepareContext", "build_augmenter", "METHODS",
           "LIVE_METHODS", "AugProMix", "AugProFGSM", "MixKD", "FGSM", "TokenReplacement"]
