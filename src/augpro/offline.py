"""``augpro augment``: write augmented copies of a dataset as JSON lines.

One object per augmented example: the text field(s) under their column names, ``source_index``
(row in the original file), ``copy``, ``label``, ``degree`` (realised share of changed tokens,
or words for word-level methods), ``changed`` and ``eligible``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from augpro.augment import LIVE_METHODS, build_augmenter
from augpro.augment.base import AugmentContext, PrepareContext
from augpro.augment.pool import check_pool_size
from augpro.augment.project import allowed_vocab_mask, special_ids_tensor
from augpro.config import TrainConfig
from augpro.data import Collator, encode
from augpro.errors import UserError
from augpro.models import load_classifier, load_tokenizer


#: memory of one augmented row held for writing: per token (a list of ids and one of token
#: types) and per row (the tuple, counts, text)
_ROW_TOKEN_BYTES, _ROW_BYTES = 60, 400


def split_segments(ids: list[int], token_types: list[int] | None, tokenizer, n_segments: int) -> list[str]:
    """Decode a (possibly paired) sequence back to its text fields."""
    special = set(tokenizer.all_special_ids)
    if n_segments == 1:
        return [tokenizer.decode([i for i in ids if i not in special]).strip()]
    if token_types is not None and any(token_types):
        parts = [[i for i, t in zip(ids, token_types) if t == s and i not in special] for s in range(2)]
    else:
        sep = tokenizer.sep_token_id
        cut = ids.index(sep) if sep in ids else len(ids)
        parts = [[i for i in ids[:cut] if i not in special], [i for i in ids[cut + 1:] if i not in special]]
    return [tokenizer.decode(p).strip() for p in parts]


def augment_to_jsonl(ns: argparse.Namespace) -> int:
    """Run the ``augment`` command; returns how many objects were written."""
    from augpro.runner import load_data

    method = ns.augment
    if method == "none":
        raise UserError("name a method with --method")
    if method in ("mixkd", "fgsm"):
        raise UserError(f"{method} makes virtual embeddings, not text; use augpro-mix/augpro-fgsm or a "
                        "replacement method")
    out_path = Path(ns.output)
    if out_path.exists() and out_path.is_dir():
        raise UserError(f"--output {out_path} is a folder")
    if not out_path.parent.is_dir():
        raise UserError(f"--output folder {out_path.parent} does not exist or is not a folder")
    try:  # a real write test (root passes os.access everywhere): fail before the work, not after
        fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=".augpro-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"--output {out_path}: cannot write to {out_path.parent} ({exc.strerror})") from None
    cfg = TrainConfig(mode="teacher", task=ns.task or (None if ns.train_file else "sst2"), data_dir=ns.data_dir,
                      from_hub=ns.from_hub, train_file=ns.train_file, dev_file=ns.dev_file,
                      text_columns=ns.text_columns, label_column=ns.label_column, regression=ns.regression,
                      train_size=ns.train_size if ns.split == "train" else None, seed=ns.seed)
    data = load_data(cfg)
    split = data.train if ns.split == "train" else data.dev
    task = data.task
    tokenizer = load_tokenizer(ns.teacher)
    enc = encode(split, tokenizer, ns.max_length)
    # every augmented row is held (as Python lists, about 60 bytes a token) until the file is written
    check_pool_size(sum(map(len, enc.encodings["input_ids"])) * _ROW_TOKEN_BYTES + len(split) * _ROW_BYTES,
                    ns.copies, len(split), what="augmented rows")
    live = method in LIVE_METHODS
    model = None
    if live or method == "knn":
        model = load_classifier(ns.teacher, task, require_head=live and ns.teacher is not None).eval()
    aug = build_augmenter(method, degree=ns.degree,
                          embedding_table=None if model is None else model.get_input_embeddings().weight.detach(),
                          alpha=ns.mix_alpha, granularity=ns.mix_granularity, eps=ns.fgsm_eps,
                          projection_table=ns.projection_table, knn_k=ns.knn_k)
    gen = torch.Generator().manual_seed(ns.seed)
    rows: list[tuple[list[int], list[int] | None, int, int, int, int, tuple[str, ...] | None]] = []
    if not live:
        aug.prepare(PrepareContext(texts=split.texts, input_ids=enc.encodings["input_ids"],
                                   token_type_ids=enc.encodings.get("token_type_ids"), tokenizer=tokenizer,
                                   max_length=ns.max_length, copies=ns.copies, generator=gen))
        for c, view in enumerate(aug.pool):
            for i in range(len(split)):
                tt = view.token_type_ids[i] if view.token_type_ids is not None else None
                texts = view.texts[i] if view.texts is not None else None
                rows.append((view.input_ids[i], tt, i, c, int(view.changed[i]), int(view.eligible[i]), texts))
    else:
        ctx = AugmentContext(student=model, teacher=model, mode="ft", temperature=1.0,
                             regression=task.is_regression, teacher_logits=lambda b: None,
                             special_ids=special_ids_tensor(tokenizer),
                             allowed=allowed_vocab_mask(tokenizer, model.get_input_embeddings().weight.shape[0]))
        collate = Collator(tokenizer.pad_token_id or 0, task.is_regression)
        bar = tqdm(total=ns.copies * len(split), desc=f"augment {method}", disable=len(split) < 500)
        for c in range(ns.copies):
            for start in range(0, len(split), ns.batch_size):
                idx = list(range(start, min(len(split), start + ns.batch_size)))
                batch = collate([enc[i] for i in idx])
                view = aug.augment(batch, ctx, gen, c)
                new = view.student_inputs["input_ids"]
                for j, i in enumerate(idx):
                    n = len(enc.encodings["input_ids"][i])
                    tt = enc.encodings["token_type_ids"][i] if "token_type_ids" in enc.encodings else None
                    rows.append((new[j, :n].tolist(), tt, i, c, int(view.changed[j]), int(view.eligible[j]), None))
                bar.update(len(idx))
        bar.close()

    fd, tmp = tempfile.mkstemp(dir=out_path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for ids, tt, i, c, changed, eligible, texts in rows:
                fields = list(texts) if texts is not None else split_segments(ids, tt, tokenizer, len(task.text_columns))
                label = split.labels[i] if task.is_regression else task.labels[split.labels[i]]
                obj = {**dict(zip(task.text_columns, fields)), "label": label, "source_index": split.ids[i],
                       "copy": c, "degree": round(changed / eligible, 6) if eligible else 0.0,
                       "changed": changed, "eligible": eligible}
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(rows)
