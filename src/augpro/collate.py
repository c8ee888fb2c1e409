"""The default collator of :class:`~augpro.distill.DistillTrainer` in a user's own script.

Examples come from a ``datasets.Dataset`` mapped through a tokenizer, a list of dicts, or
augpro's own :class:`~augpro.data.EncodedDataset`: unpadded ``input_ids`` (lists or tensors),
optional ``attention_mask``/``token_type_ids``, a gold label under ``label``, ``labels`` or
``label_ids``. :class:`PaddingCollator` pads each batch to its longest row (as
:class:`~augpro.data.Collator` does for the CLI) and drops text columns.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from augpro.data import Collator

_LABEL_KEYS = ("labels", "label", "label_ids")


def _plain(value: Any) -> Any:
    """Tensors and arrays of a sequence column as lists; scalars as Python numbers."""
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.dim() else value.item()
    if hasattr(value, "tolist"):  # numpy
        return value.tolist()
    return value


class PaddingCollator(Collator):
    """Pads tokenized examples into a batch of tensors (dynamic padding, gold labels as ``labels``).

    Args:
        pad_token_id: the id padded rows are filled with.
        regression: labels are real-valued scores (float) instead of class indices (long).
        teacher_pad_token_id: pad id of a second (teacher) tokenization, if the examples carry one.
    """

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rows = []
        for i, feature in enumerate(features):
            label_key = next((k for k in _LABEL_KEYS if k in feature), None)
            if label_key is None:
                raise ValueError(f"example {i} has no label (a 'label' or 'labels' column): DistillTrainer's loss "
                                 "reads the gold label (it weighs it with ce_weight in KD mode)")
            row: dict[str, Any] = {}
            for key, value in feature.items():
                if key in _LABEL_KEYS:
                    continue
                if key == "teacher_logits" and isinstance(value, torch.Tensor):
                    row[key] = value
                    continue
                value = _plain(value)
                if isinstance(value, (list, int, float)) and not isinstance(value, bool):
                    row[key] = value
            row["labels"] = _plain(feature[label_key])
            if "input_ids" not in row:
                raise ValueError(f"example {i} has no input_ids: tokenize the dataset first (e.g. dataset.map("
                                 "lambda e: tokenizer(e['sentence'], truncation=True), batched=True))")
            if "attention_mask" not in row:
                row["attention_mask"] = [1] * len(row["input_ids"])
            rows.append(row)
        return super().__call__(rows)
