"""Distillation across tokenizers: augmented teacher tokens back to text, then student tokens.

When the teacher and the student tokenize differently, augpro augments in the *teacher's*
vocabulary (AugPro-Mix projects in the teacher's embedding table, token replacement draws teacher
tokens, text augmenters write text) and the teacher is labelled on those tokens. The student sees
the same augmented example re-tokenized: the teacher tokens are decoded to text, one string per
segment, and the student's tokenizer encodes it (truncated to ``max_length``).

Segments of a sentence pair are told apart by the teacher's token types where it has them
(BERT-style) and otherwise by its separator token (``</s></s>`` in RoBERTa-style pairs), so both
segments survive decoding and the student gets a proper pair again.
"""

from __future__ import annotations

from typing import Any

import torch

Batch = dict[str, torch.Tensor]


class Retokenizer:
    """Maps teacher-token sequences to the student's tokenization through text.

    Args:
        teacher_tokenizer: the tokenizer whose ids come in.
        student_tokenizer: the tokenizer the student reads.
        max_length: truncation length of the student's encoding.
        segments: text fields per example (1, or 2 for sentence pairs).
    """

    def __init__(self, teacher_tokenizer: Any, student_tokenizer: Any, max_length: int, segments: int):
        if segments not in (1, 2):
            raise ValueError(f"segments must be 1 or 2, got {segments}")
        self.teacher_tokenizer = teacher_tokenizer
        self.student_tokenizer = student_tokenizer
        self.max_length = max_length
        self.segments = segments
        self._special = set(i for i in teacher_tokenizer.all_special_ids if i is not None)
        self._sep = teacher_tokenizer.sep_token_id

    # ---------------------------------------------------------------- text
    def _split(self, ids: list[int], types: list[int] | None) -> list[list[int]]:
        """The content tokens of each segment (special tokens dropped)."""
        if self.segments == 1:
            return [[t for t in ids if t not in self._special]]
        parts: list[list[int]] = [[], []]
        if types is not None and any(types):
            for t, s in zip(ids, types):
                if t not in self._special:
                    parts[min(1, s)].append(t)
            return parts
        # no token types: the first separator closes the first segment
        seen_sep = False
        for t in ids:
            if t == self._sep:
                seen_sep = True
            elif t not in self._special:
                parts[1 if seen_sep else 0].append(t)
        return parts

    def texts(self, ids_rows: list[list[int]], type_rows: list[list[int]] | None = None) -> list[tuple[str, ...]]:
        """Decode teacher-token rows (unpadded) into one text per segment."""
        out = []
        for i, ids in enumerate(ids_rows):
            parts = self._split(ids, None if type_rows is None else type_rows[i])
            out.append(tuple(self.teacher_tokenizer.decode(p, skip_special_tokens=True,
                                                           clean_up_tokenization_spaces=True).strip()
                             for p in parts))
        return out

    def encode(self, texts: list[tuple[str, ...]]) -> dict[str, list]:
        """The student's encoding of texts (unpadded lists, as :func:`augpro.data.encode` makes)."""
        if not texts:
            return {"input_ids": [], "attention_mask": []}
        columns = [list(c) for c in zip(*texts)]
        enc = self.student_tokenizer(*columns, truncation=True, max_length=self.max_length)
        return {k: [list(x) for x in enc[k]] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}

    # ---------------------------------------------------------------- batches
    def batch(self, teacher_batch: Batch) -> Batch:
        """A padded teacher-token batch (``input_ids``, ``attention_mask``[, ``token_type_ids``])
        as a padded student batch on the same device."""
        ids = teacher_batch["input_ids"]
        lengths = teacher_batch["attention_mask"].sum(1).tolist()
        rows = [r[:n] for r, n in zip(ids.tolist(), lengths)]
        types = teacher_batch.get("token_type_ids")
        type_rows = None if types is None else [r[:n] for r, n in zip(types.tolist(), lengths)]
        enc = self.encode(self.texts(rows, type_rows))
        pad = self.student_tokenizer.pad_token_id or 0
        width = max((len(r) for r in enc["input_ids"]), default=0)
        out: Batch = {}
        for key, value in (("input_ids", pad), ("attention_mask", 0), ("token_type_ids", 0)):
            if key in enc:
                out[key] = torch.tensor([r + [value] * (width - len(r)) for r in enc[key]], dtype=torch.long,
                                        device=ids.device)
        return out
