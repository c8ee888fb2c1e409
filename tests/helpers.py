"""Helpers shared by tests (batches from real rows, contexts)."""

from __future__ import annotations

import torch

from augpro.augment.base import AugmentContext
from augpro.augment.project import allowed_vocab_mask, special_ids_tensor
from augpro.data import encode, pad_batch


def make_batch(split, tokenizer, n: int = 16, start: int = 0, max_length: int = 128):
    part = split.select(range(start, start + n))
    ds = encode(part, tokenizer, max_length)
    return pad_batch([ds[i] for i in range(len(ds))], tokenizer.pad_token_id)


def make_ctx(teacher, student, tokenizer, mode: str = "kd", batch=None) -> AugmentContext:
    def t_logits(b):
        if teacher is None:
            return None
        with torch.no_grad():
            return teacher(**{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in b}).logits

    return AugmentContext(student=student, teacher=teacher, mode=mode, temperature=1.0, regression=False,
                          teacher_logits=t_logits, special_ids=special_ids_tensor(tokenizer),
                          allowed=allowed_vocab_mask(tokenizer, 30522))
