"""What a training run prints: one progress bar and one line per epoch.

Hugging Face's ``ProgressCallback`` prints every logging step's dict with its numbers formatted as
strings (``{'loss': '0.1124', ...}``) and opens an evaluation bar under the training bar.
:class:`EpochLog` replaces it in the CLI's runs (:func:`use_epoch_log`): a single training bar,
and at the end of each epoch one line with real numbers::

    epoch 1/3  loss 0.6906  aug_degree 0.300  label_flip_rate 0.094  dev accuracy 0.8165  (41 s)

The line averages the epoch's logged training values (``loss``, augmentation statistics) and
shows the epoch's evaluation (each evaluated split under its name). TensorBoard logs are not
affected.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Any, TextIO

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

#: training log keys shown on the epoch line, in this order (others are left to TensorBoard)
TRAIN_KEYS = ("loss", "loss_aug", "loss_hidden", "loss_attention", "aug_degree", "label_flip_rate")
#: evaluation keys that are bookkeeping, not metrics
_EVAL_SKIP = ("loss", "runtime", "samples_per_second", "steps_per_second", "epoch")


def format_eval(metrics: dict[str, float]) -> str:
    """``eval_accuracy`` -> ``dev accuracy 0.8165``; ``eval_val_score`` -> ``val score ...``.

    ``score`` is left out where it repeats a split's only metric."""
    splits: dict[str, dict[str, float]] = defaultdict(dict)
    for key, value in metrics.items():
        if not key.startswith("eval_") or not isinstance(value, (int, float)):
            continue
        name = key[len("eval_"):]
        split = "dev"
        for prefix in ("dev_", "val_"):
            if name.startswith(prefix):
                split, name = prefix[:-1], name[len(prefix):]
        if name not in _EVAL_SKIP:
            splits[split][name] = float(value)
    parts = []
    for split, values in splits.items():
        if len(values) == 2 and "score" in values:
            values.pop("score")
        parts.append(f"{split} " + "  ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return "  ".join(parts)


class EpochLog(TrainerCallback):
    """One training bar and one plain line per epoch (see the module docstring).

    Args:
        progress: show the training bar (the epoch lines are printed either way).
        stream: where lines and the bar go (default ``sys.stdout`` for lines, tqdm's default for the bar).
    """

    def __init__(self, progress: bool = True, stream: TextIO | None = None):
        self.progress = progress
        self.stream = stream
        self._bar: Any = None
        self._train: dict[str, list[float]] = defaultdict(list)
        self._eval: dict[str, float] = {}
        self._training = False
        self._started = 0.0
        self._pending = False

    # ------------------------------------------------------------ events
    def on_train_begin(self, args, state, control, **kwargs):
        self._training = state.is_world_process_zero
        self._started = time.time()
        if self._training and self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=state.max_steps, initial=state.global_step, dynamic_ncols=True, leave=False,
                             desc="train")

    def on_step_end(self, args, state, control, **kwargs):
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._flush(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self._training or not logs:
            return
        if "loss" in logs:
            for key in TRAIN_KEYS:
                if isinstance(logs.get(key), (int, float)):
                    self._train[key].append(float(logs[key]))
            self._pending = True
        if any(k.startswith("eval_") for k in logs):
            self._eval.update({k: v for k, v in logs.items() if k.startswith("eval_")})
            self._pending = True

    def on_train_end(self, args, state, control, **kwargs):
        self._flush(state)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._training = False

    # ------------------------------------------------------------ output
    def epoch_line(self, state) -> str:
        """The line for the epoch that just ended (what :meth:`on_epoch_begin` prints)."""
        epoch = state.epoch or 0.0
        done = f"{epoch:.0f}" if abs(epoch - round(epoch)) < 1e-6 else f"{epoch:.2f}"
        total = state.num_train_epochs
        parts = [f"epoch {done}/{total}"]
        parts += [f"{key} {sum(v) / len(v):.4f}" for key, v in self._train.items() if v]
        evaluation = format_eval(self._eval)
        if evaluation:
            parts.append(evaluation)
        parts.append(f"({time.time() - self._started:.0f} s)")
        return "  ".join(parts)

    def _flush(self, state) -> None:
        if not self._training or not self._pending:
            return
        line = self.epoch_line(state)
        self._train.clear()
        self._eval.clear()
        self._pending = False
        stream = self.stream or sys.stdout
        if self._bar is not None:
            self._bar.write(line, file=stream)
        else:
            print(line, file=stream, flush=True)


def use_epoch_log(trainer: Any, progress: bool = True, quiet: bool = False) -> None:
    """Replace a ``Trainer``'s per-step printing (``ProgressCallback``/``PrinterCallback``) with
    :class:`EpochLog`; with ``quiet`` nothing is printed at all."""
    for callback in (ProgressCallback, PrinterCallback):
        trainer.remove_callback(callback)
    try:  # in a notebook the Trainer uses its own bar
        from transformers.utils.notebook import NotebookProgressCallback

        trainer.remove_callback(NotebookProgressCallback)
    except ImportError:  # pragma: no cover
        pass
    if not quiet:
        trainer.add_callback(EpochLog(progress=progress))
