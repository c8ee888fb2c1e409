"""GLUE metrics computed locally (the ``evaluate`` library fetches metric scripts at run time)."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from augpro.tasks import TaskSpec


def _safe(value: float) -> float:
    return 0.0 if value is None or not np.isfinite(value) else float(value)


def compute_metrics(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Task metrics from raw logits and gold labels.

    Returns each of ``task.metrics`` plus ``score``, their mean (the GLUE convention for tasks
    with two metrics), which is what study tables rank by.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    out: dict[str, float] = {}
    if task.is_regression:
        preds = logits.reshape(-1)
        gold = labels.reshape(-1).astype(float)
        constant = np.std(preds) == 0 or np.std(gold) == 0
        out["pearson"] = 0.0 if constant else _safe(pearsonr(preds, gold)[0])
        out["spearman"] = 0.0 if constant else _safe(spearmanr(preds, gold)[0])
    else:
        preds = logits.argmax(-1)
        gold = labels.astype(int)
        for name in task.metrics:
            if name == "accuracy":
                out[name] = float(accuracy_score(gold, preds))
            elif name == "f1":
                out[name] = float(f1_score(gold, preds, zero_division=0))
            elif name == "macro_f1":
                out[name] = float(f1_score(gold, preds, average="macro", zero_division=0))
            elif name == "matthews_correlation":
                out[name] = _safe(matthews_corrcoef(gold, preds))
    out = {k: out[k] for k in task.metrics}
    out["score"] = float(np.mean(list(out.values())))
    return out
