"""One call per training command: ``augpro.distill``, ``augpro.finetune``, ``augpro.train_teacher``.

Each takes the CLI's flags as keywords (``--train-size 2000`` is ``train_size=2000``: the fields of
:class:`~augpro.config.TrainConfig`), runs the same code as the command (:func:`augpro.runner.run_training`)
and returns the metrics (what ``metrics.json`` holds)::

    augpro.train_teacher(task="sst2", train_size=2000, output_dir="runs/teacher")
    metrics = augpro.distill(task="sst2", train_size=2000, teacher="runs/teacher", augment="augpro-mix",
                             degree=0.3, output_dir="runs/kd")
    metrics["dev"]["accuracy"]

A keyword that is not a setting, or a value of the wrong type, raises :class:`~augpro.errors.UserError`
naming it (with the closest setting names), before anything is read or written.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import fields
from typing import Any

from augpro.config import TrainConfig
from augpro.errors import UserError

#: CLI flags whose keyword is another setting (negations and renamed flags)
_FLAG_ALIASES = {
    "quiet": "progress=False", "no_checkpoints": "save_checkpoints=False", "no_cache": "cache=False",
    "no_eval_every_epoch": "eval_every_epoch=False", "no_group_by_length": "group_by_length=False",
    "method": "augment=...", "lr": "learning_rate=...",
}
#: settings the call itself decides
_FIXED = ("mode", "extra")


_TYPES: dict[str, tuple[type, ...]] = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}
_WORDS = {"bool": "True or False", "int": "an integer", "float": "a number", "str": "a string"}


def _check_type(call: str, name: str, annotation: str, value: Any) -> None:
    """Reject a value whose type the setting's annotation (``"int"``, ``"float | None"``, ...) excludes."""
    parts = [p.strip() for p in str(annotation).split("|")]
    optional = "None" in parts
    kinds = [p for p in parts if p != "None"]
    if len(kinds) != 1 or kinds[0] not in _TYPES:
        return  # e.g. dict[str, Any]: not checked here
    kind = kinds[0]
    if value is None and optional:
        return
    ok = isinstance(value, _TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))
    if not ok:
        raise UserError(f"augpro.{call}(): {name} must be {_WORDS[kind]}{' or None' if optional else ''}, "
                        f"got {value!r}")


def _coerce(name: str, value: Any) -> Any:
    """Python spellings of CLI values: paths as strings, ``student_layers=2`` or ``[0, 5]``."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if name == "student_layers" and not isinstance(value, (str, bool)):
        if isinstance(value, int):
            return str(value)
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return ",".join(str(v) for v in value)
    return value


def config_from_settings(mode: str, call: str, settings: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` for ``mode`` from keyword settings, checked (see the module docstring)."""
    known = {f.name: f for f in fields(TrainConfig) if f.name not in _FIXED}
    clean: dict[str, Any] = {}
    for key, value in settings.items():
        name = key.replace("-", "_")
        if name in _FIXED:
            raise UserError(f"augpro.{call}() sets {name} itself; leave {name}= out")
        if name not in known:
            hint = _FLAG_ALIASES.get(name) or " or ".join(difflib.get_close_matches(name, list(known), n=3,
                                                                                     cutoff=0.6))
            raise UserError(f"augpro.{call}() got an unknown setting {key!r}"
                            + (f" (did you mean {hint}?)" if hint else "")
                            + "; the settings are the CLI's flags as keywords (the fields of augpro.TrainConfig)")
        value = _coerce(name, value)
        _check_type(call, name, known[name].type, value)
        clean[name] = value
    return TrainConfig.from_dict({**clean, "mode": mode})


def _run(mode: str, call: str, settings: dict[str, Any]) -> dict[str, Any]:
    from augpro.runner import run_training

    return run_training(config_from_settings(mode, call, settings))


def distill(**settings: Any) -> dict[str, Any]:
    """Distil a layer-subset student from a teacher (``augpro distill``); returns the run's metrics.

    Needs ``teacher`` (a fine-tuned teacher folder, e.g. from :func:`train_teacher`) and
    ``output_dir``. Other settings as the CLI's flags: ``task``, ``train_size``, ``student_layers``,
    ``augment``, ``degree``, ``copies``, ``temperature``, ``kd_weight``, ... (``augpro distill --help``).
    """
    return _run("kd", "distill", settings)


def finetune(**settings: Any) -> dict[str, Any]:
    """Fine-tune a layer-subset student on gold labels, without a teacher (``augpro finetune``);
    returns the run's metrics. Needs ``output_dir``; the settings are the CLI's flags."""
    return _run("ft", "finetune", settings)


def train_teacher(**settings: Any) -> dict[str, Any]:
    """Fine-tune a teacher on gold labels (``augpro teacher``); returns the run's metrics. Needs
    ``output_dir`` (the folder to pass as ``teacher=`` to :func:`distill`); ``model`` names the
    base checkpoint (default MiniLM-L6-H384)."""
    return _run("teacher", "train_teacher", settings)
