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

import sys
import types
from typing import Any

__version__ = "0.1.0"

#: the public names, imported on first access (:func:`__getattr__`)
_EXPORTS = ("AugProMix", "AugProFGSM", "MixKD", "FGSM", "TokenReplacement", "SynonymReplacement", "EDA", "Augmenter",
            "AugmentResult", "build_augmenter", "METHODS", "DistillTrainer", "PaddingCollator", "distill", "finetune",
            "train_teacher", "TrainConfig", "UserError")
_AUGMENT_NAMES = ("AugProMix", "AugProFGSM", "MixKD", "FGSM", "TokenReplacement", "Augmenter", "build_augmenter",
                  "METHODS")

__all__ = ["__version__", *_EXPORTS]


def _load(name: str) -> Any:
    """The exported object ``name``. Static imports only (tests/test_errors.py forbids importlib)."""
    if name in _AUGMENT_NAMES:
        from augpro import augment as module
    elif name in ("SynonymReplacement", "EDA"):
        from augpro.augment import text as module
    elif name == "AugmentResult":
        from augpro.augment import plain as module
    elif name == "DistillTrainer":
        from augpro.distill import DistillTrainer  # the module is shadowed by the function distill

        return DistillTrainer
    elif name == "PaddingCollator":
        from augpro import collate as module
    elif name in ("distill", "finetune", "train_teacher"):
        from augpro import api as module
    elif name == "TrainConfig":
        from augpro import config as module
    elif name == "UserError":
        from augpro import errors as module
    else:
        raise AttributeError(f"module 'augpro' has no attribute {name!r}")
    return getattr(module, name)


def __getattr__(name: str) -> Any:
    value = _load(name)
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
