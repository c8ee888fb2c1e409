"""What augmenters must keep and may produce, for Python users who give models, not settings.

The CLI's runner knows the tokenizer and passes ``special_ids``/``allowed`` to the trainer. A
user who calls an augmenter or :class:`~augpro.distill.DistillTrainer` directly may give only
models; :func:`resolve_vocabulary` derives the same sets:

1. from ``tokenizer`` when one is given (exact: the tokenizer's special tokens, no ``[unused*]``);
2. else from the tokenizer saved beside a model loaded with ``from_pretrained`` (its
   ``name_or_path``, read from local files only: never a download);
3. else from the models' configs (``pad``/``bos``/``eos``/``sep``/``cls``/``mask``/``unk`` ids) plus
   the *boundary tokens* of the rows at hand: the first and last real token of every row and the
   last token of a pair's first segment ([CLS]/[SEP], ``<s>``/``</s>``). That covers the
   tokens a tokenizer wraps text in, and a warning says a tokenizer gives the exact sets.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from augpro.augment.project import allowed_vocab_mask, special_ids_tensor

#: config attributes that hold a special token id
_CONFIG_SPECIAL_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                       "mask_token_id", "unk_token_id", "decoder_start_token_id")


@dataclass(frozen=True)
class Vocabulary:
    """The token sets an augmenter works with.

    Attributes:
        special_ids: ids never changed (``[S]`` long).
        allowed: ``[V]`` bool, ids an augmenter may produce.
        pad_token_id: the padding id.
        mask_token_id: the mask id (``mask`` replacement), or ``None`` when unknown.
        tokenizer: the tokenizer these came from, or ``None`` when they were derived without one.
    """

    special_ids: torch.Tensor
    allowed: torch.Tensor
    pad_token_id: int
    mask_token_id: int | None
    tokenizer: Any = None


def vocab_size(*models: nn.Module | None) -> int | None:
    """Rows of the first model's input word-embedding table (``None`` without a model)."""
    for m in models:
        if m is not None:
            return int(m.get_input_embeddings().weight.shape[0])
    return None


def from_tokenizer(tokenizer: Any, size: int | None = None) -> Vocabulary:
    """The exact sets of a tokenizer (``size``: rows of the embedding table, if larger)."""
    return Vocabulary(special_ids=special_ids_tensor(tokenizer), allowed=allowed_vocab_mask(tokenizer, size),
                      pad_token_id=tokenizer.pad_token_id or 0, mask_token_id=tokenizer.mask_token_id,
                      tokenizer=tokenizer)


def find_tokenizer(*models: nn.Module | None) -> Any | None:
    """The tokenizer saved with a model loaded by ``from_pretrained`` (local files only), or ``None``."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    for m in models:
        path = getattr(m, "name_or_path", None) or getattr(getattr(m, "config", None), "_name_or_path", None)
        if not path:
            continue
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except Exception:  # no tokenizer files there, or not in the local cache: try the next model
            continue
        finally:
            hf_logging.set_verbosity(verbosity)
    return None


def config_special_ids(*models: nn.Module | None) -> set[int]:
    """Special token ids named in the models' configs."""
    out: set[int] = set()
    for m in models:
        cfg = getattr(m, "config", None)
        for name in _CONFIG_SPECIAL_IDS:
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value >= 0:
                out.add(value)
    return out


def boundary_ids(rows: Iterable[Sequence[int]], type_rows: Iterable[Sequence[int]] | None = None) -> set[int]:
    """Ids a tokenizer wraps text in, seen in unpadded rows: first and last token of each row,
    and the last token of the first segment where token types mark a pair."""
    out: set[int] = set()
    types = iter(type_rows) if type_rows is not None else None
    for row in rows:
        row = list(row)
        t = list(next(types)) if types is not None else None
        if not row:
            continue
        out.update((row[0], row[-1]))
        second = t.index(1) if t is not None and 1 in t else 0
        if second > 0:
            out.add(row[second - 1])
    return out


def batch_rows(batch: dict[str, torch.Tensor]) -> tuple[list[list[int]], list[list[int]] | None]:
    """The unpadded rows (and token type rows) of a padded batch."""
    ids = batch["input_ids"]
    mask = batch["attention_mask"].bool() if "attention_mask" in batch else torch.ones_like(ids, dtype=torch.bool)
    rows = [r[m].tolist() for r, m in zip(ids, mask)]
    types = batch.get("token_type_ids")
    type_rows = None if types is None else [r[m].tolist() for r, m in zip(types, mask)]
    return rows, type_rows


def resolve_vocabulary(*models: nn.Module | None, tokenizer: Any = None,
                       rows: Iterable[Sequence[int]] | None = None,
                       type_rows: Iterable[Sequence[int]] | None = None) -> Vocabulary:
    """Special ids, allowed vocabulary, pad and mask ids for ``models`` (see the module docstring).

    Args:
        models: the models the augmented tokens are for (the teacher first: augmenters work in
            the teacher's vocabulary); ``None`` entries are skipped.
        tokenizer: the tokenizer of the models, when known (exact sets).
        rows: unpadded token rows to take boundary tokens from when no tokenizer is known.
        type_rows: their token type ids, if any.
    """
    size = vocab_size(*models)
    if tokenizer is None:
        tokenizer = find_tokenizer(*models)
    if tokenizer is not None:
        return from_tokenizer(tokenizer, size)
    if size is None:
        raise ValueError("pass tokenizer= (or a model): the special tokens and the vocabulary come from one of them")
    special = config_special_ids(*models)
    found = boundary_ids(rows, type_rows) if rows is not None else set()
    warnings.warn(f"augpro: no tokenizer given or saved with the models; treating ids {sorted(special | found)} "
                  "(the configs' special ids and the rows' boundary tokens) as special. Pass tokenizer= "
                  "(or processing_class= to DistillTrainer) for the exact special tokens and vocabulary",
                  UserWarning, stacklevel=3)
    special |= found
    special_ids = torch.tensor(sorted(i for i in special if i < size), dtype=torch.long)
    allowed = torch.ones(size, dtype=torch.bool)
    allowed[special_ids] = False
    cfg = next(getattr(m, "config", None) for m in models if m is not None)
    pad = getattr(cfg, "pad_token_id", None)
    mask = getattr(cfg, "mask_token_id", None)
    return Vocabulary(special_ids=special_ids, allowed=allowed, pad_token_id=pad if isinstance(pad, int) else 0,
                      mask_token_id=mask if isinstance(mask, int) else None)
