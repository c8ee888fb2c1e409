"""augpro: distil big text classifiers into small ones with augmentation made for distillation.

The Python API (``docs/api.md``) is the set of objects the CLI uses:

* augmenters: :class:`AugProMix`, :class:`AugProFGSM`, :class:`MixKD`, :class:`FGSM`,
  :class:`TokenReplacement`, :class:`SynonymReplacement`, :class:`EDA`; :func:`build_augmenter`
  makes one by its CLI name (:data:`METHODS`). ``aug.augment(batch, teacher=..., student=...)``
  augments a tokenizer batch;
* :class:`DistillTrainer`, a Hugging Face ``Trainer`` for KD with any augmenter;
* :func:`distill`, :func:`finetune`, :func:`train_teacher`: a whole CLI command as one call,
  returning its metrics; :class:`TrainConfig` holds their settings.

Names are imported on first use, so ``import augpro`` (and the CLI's ``report``, ``--dry-run``
paths) does not import torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first access)
_EXPORTS = {
    "AugProMix": "augpro.augment.augpro",
    "AugProFGSM": "augpro.augment.augpro",
    "MixKD": "augpro.augment.interpolate",
    "FGSM": "augpro.augment.interpolate",
    "TokenReplacement": "augpro.augment.replace",
    "SynonymReplacement": "augpro.augment.text",
    "EDA": "augpro.augment.text",
    "Augmenter": "augpro.augment.base",
    "AugmentResult": "augpro.augment.plain",
    "build_augmenter": "augpro.augment",
    "METHODS": "augpro.augment",
    "DistillTrainer": "augpro.distill",
    "PaddingCollator": "augpro.collate",
    "distill": "augpro.api",
    "finetune": "augpro.api",
    "train_teacher": "augpro.api",
    "TrainConfig": "augpro.config",
    "UserError": "augpro.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'augpro' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


#: API functions that share their name with a submodule (``augpro/distill.py``)
_FUNCTIONS_NAMED_LIKE_MODULES = frozenset({"distill"})


class _Package(types.ModuleType):
    """The ``augpro`` package. ``augpro.distill`` is the function :func:`augpro.api.distill`, and a
    submodule of the same name (the trainer's module, ``from augpro.distill import ...``) must not
    replace it when it is imported: Python sets every imported submodule as an attribute of its
    package, which this refuses for names the API gives to functions."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTIONS_NAMED_LIKE_MODULES and isinstance(value, types.ModuleType):
            return  # the submodule stays importable through sys.modules
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
