"""One training run from a :class:`~augpro.config.TrainConfig`, top to bottom.

:func:`run_training` calls one function per step, in this order (each step's machinery lives in
the module named beside it):

1. :func:`start_run`: the settings and the output folder checked, threads and seeds set;
2. :func:`load_data`: the task's rows, the validation split held out, the training subset (``data``);
3. :func:`load_models`: tokenizer, teacher and layer-subset student (``models``, ``retokenize``);
4. :func:`encode_splits`: the tokenized splits (``data``);
5. :func:`training_arguments`: the ``TrainingArguments`` and the step budget;
6. :func:`vocabulary_snapshot`: what augmenters may produce (``augment.project``);
7. :func:`label_with_teacher`: the teacher's logits on the training rows, cached (``cache``);
8. :func:`prepare_augmenter`: the augmenter and its offline pool (``augment``);
9. :func:`build_trainer` and :func:`train_model`: the ``DistillTrainer`` (``distill``);
10. :func:`evaluate_run`: per-epoch history and the final dev and validation scores (``metrics``);
11. :func:`run_metrics` and :func:`save_run`: ``metrics.json``, a standard checkpoint, the
    training row ids.

Every setting is checked before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainingArguments, set_seed
from transformers.utils import logging as hf_logging

from augpro import __version__
from augpro.augment import build_augmenter
from augpro.augment.base import Augmenter, PrepareContext
from augpro.augment.project import allowed_vocab_mask, special_ids_tensor
from augpro.cache import cached_tensor, fingerprint
from augpro.config import VAL_SEED, TrainConfig, validate
from augpro.data import (TEACHER_PREFIX, Collator, EncodedDataset, TaskData, encode, hold_out, load_task_data,
                         subset)
from augpro.distill import DistillTrainer, last_complete_checkpoint, model_inputs
from augpro.errors import UserError
from augpro.metrics import compute_metrics
from augpro.models import (count_parameters, load_classifier, load_tokenizer, make_layer_subset_student,
                           model_fingerprint, same_tokenizer, save_model, set_threads)
from augpro.retokenize import Retokenizer
from augpro.tasks import TaskSpec, get_task

log = logging.getLogger("augpro")


def load_data(cfg: TrainConfig) -> TaskData:
    """The task's train (subset) and dev splits as the config names them."""
    task = get_task(cfg.task) if cfg.task and not cfg.train_file else None
    cols = [c.strip() for c in cfg.text_columns.split(",")] if cfg.text_columns else None
    data = load_task_data(task, data_dir=cfg.data_dir, from_hub=cfg.from_hub, train_file=cfg.train_file,
                          dev_file=cfg.dev_file, text_columns=cols, label_column=cfg.label_column,
                          regression=cfg.regression)
    # the validation rows come out first (a fixed seed: the same rows for every run seed), so that
    # no training subset of any seed overlaps them
    data.train, data.val = hold_out(data.train, cfg.val_size, VAL_SEED, data.task.is_regression)
    data.train = subset(data.train, cfg.train_size, cfg.seed, data.task.is_regression)
    if cfg.dev_size is not None and cfg.dev_size < len(data.dev):
        data.dev = subset(data.dev, cfg.dev_size, 0, data.task.is_regression)  # same rows for every run
    return data


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, encodings: dict[str, list], batch_size: int = 128,
                   pad_token_id: int = 0, progress: bool = False, desc: str = "teacher logits",
                   bf16: bool = False) -> torch.Tensor:
    """Logits of ``model`` on unpadded encodings, batched by length (least padding); float32, computed
    under bf16 autocast with ``bf16`` (about 2x faster on CPUs with native bf16: docs/performance.md)."""
    import contextlib

    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(encodings["input_ids"])
    order = sorted(range(n), key=lambda i: len(encodings["input_ids"][i]))
    out: torch.Tensor | None = None
    feats = EncodedDataset({k: v for k, v in encodings.items()}, [0] * n)
    collate = Collator(pad_token_id, regression=False)
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress or n < 4 * batch_size, leave=False):
        idx = order[start:start + batch_size]
        batch = collate([feats[i] for i in idx])
        with torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            logits = model(**{k: v.to(device) for k, v in model_inputs(batch).items()}).logits
        logits = logits.float().cpu()
        if out is None:
            out = torch.empty(n, logits.shape[1])
        out[idx] = logits
    model.train(was_training)
    return out if out is not None else torch.empty(0, 1)


def teacher_logits_cached(teacher: torch.nn.Module, teacher_id: str, encodings: dict[str, list],
                          cfg: TrainConfig, pad_token_id: int) -> torch.Tensor:
    """Teacher logits on encodings, cached on disk by (teacher weights, token content, and bf16
    when the teacher runs in bf16, ``cfg.resolved_bf16_teacher`` on its device: fp32 and bf16
    logits never stand in for each other)."""
    bf16 = cfg.resolved_bf16_teacher(next(teacher.parameters()).device)
    kind = "logits-v1-bf16" if bf16 else "logits-v1"  # fp32 keys as before: old caches stay valid
    key = fingerprint(kind, teacher_id, encodings["input_ids"], encodings.get("token_type_ids"))
    return cached_tensor("teacher_logits", key,
                         lambda: predict_logits(teacher, encodings, cfg.eval_batch_size, pad_token_id, cfg.progress,
                                                bf16=bf16),
                         enabled=cfg.cache)


def _check_output_dir(path: str | None, resume: bool) -> Path:
    if not path:
        raise UserError("--output-dir is required")
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UserError(f"--output-dir {out} exists and is not a folder")
    probe = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not probe.is_dir():
        raise UserError(f"--output-dir {out}: cannot create it, {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK):
        raise UserError(f"--output-dir {out}: cannot write to {probe}")
    try:  # os.access says yes to root everywhere; a real write also catches /proc, read-only mounts ...
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".augpro-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"--output-dir {out}: cannot write to {probe} ({exc.strerror})") from None
    if out.is_dir() and (out / "metrics.json").exists() and not resume:
        raise UserError(f"{out} already holds a finished run (metrics.json); choose another --output-dir or "
                        "delete it")
    return out


def check_max_length(max_length: int, tokenizer, *models: torch.nn.Module | None) -> None:
    """``--max-length`` must fit the models' position embeddings (else training crashes on long texts)."""
    limits = [getattr(m.config, "max_position_embeddings", None) for m in models if m is not None]
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and tok_limit < 1_000_000:  # tokenizers without a limit report ~1e30
        limits.append(tok_limit)
    limits = [n for n in limits if isinstance(n, int) and n > 0]
    if limits and max_length > min(limits):
        raise UserError(f"--max-length {max_length} is more than the model's {min(limits)} positions; "
                        f"use --max-length {min(limits)} or less (longer texts are truncated)")


#: methods that feed virtual embeddings or student-space perturbations to both models: they need
#: the teacher and the student to read the same token positions
SHARED_TOKENIZER_METHODS = ("mixkd", "fgsm", "augpro-fgsm")


def check_cross_tokenizer(cfg: TrainConfig) -> None:
    """Settings that cannot work when the teacher and the student tokenize differently."""
    method = (cfg.augment or "none").strip().lower()
    if method in SHARED_TOKENIZER_METHODS:
        raise UserError(f"--augment {method} needs the teacher and the student to share a tokenizer (it feeds "
                        "both models embeddings of the same token positions); these two tokenize differently. "
                        "Use augpro-mix, a replacement method (knn/mask/random), synonym, eda or none, which "
                        "augment in the teacher's vocabulary and re-tokenize the text for the student")
    if method == "augpro-mix" and cfg.projection_table == "student":
        raise UserError("--projection-table student needs a shared tokenizer; with different tokenizers AugPro-Mix "
                        "projects in the teacher's table (the default) and the student re-tokenizes the text")


def write_json_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def weights_sha256(model: torch.nn.Module) -> str:
    """Hash of every parameter's bytes (to check that data-parallel replicas agree)."""
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def replica_weight_hashes(model: torch.nn.Module) -> list[str]:
    """The weight hash of every process (one entry when not distributed)."""
    mine = weights_sha256(model)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        hashes: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(hashes, mine)
        return hashes
    return [mine]


def _split_metrics(metrics: dict[str, float], prefix: str, names: tuple[str, ...]) -> dict[str, float]:
    """The task's metrics and ``score`` of one ``Trainer.evaluate`` result, without the key prefix."""
    return {k[len(prefix):]: float(v) for k, v in metrics.items()
            if k.startswith(prefix) and k[len(prefix):] in (*names, "score")}


def eval_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-epoch evaluations of a training run: ``{"step", "epoch", "dev"[, "val"]}`` scores, in order.

    ``log_history`` is ``Trainer.state.log_history``; with a validation split the Trainer logs
    ``eval_val_score`` and ``eval_dev_score``, without one ``eval_score`` (the dev set). The final
    evaluations after training are not in it (they are the run's ``dev`` and ``val``).
    """
    points: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, name in (("eval_score", "dev"), ("eval_dev_score", "dev"), ("eval_val_score", "val")):
            if key in entry:
                point = points.setdefault(int(step), {"step": int(step), "epoch": entry.get("epoch")})
                point[name] = float(entry[key])
    return [points[k] for k in sorted(points)]


def run_training(cfg: TrainConfig) -> dict[str, Any]:
    """Run one teacher/KD/FT training and return what ``metrics.json`` holds.

    Each step is a function below, called in this order; every setting is checked (the first three
    steps) before anything is written.
    """
    out = start_run(cfg)
    started = time.time()
    data = load_data(cfg)
    models = load_models(cfg, data)
    cfg = fit_defaults_to_models(cfg, models)
    enc = encode_splits(cfg, data, models)
    args, total_steps = training_arguments(cfg, out, len(enc.train))
    vocab = vocabulary_snapshot(models, enc)  # before the teacher moves to the training device
    teacher_id = label_with_teacher(cfg, models, enc, args)
    augmenter = prepare_augmenter(cfg, data, models, enc, vocab, teacher_id, total_steps)
    trainer = build_trainer(cfg, data.task, args, models, enc, augmenter, vocab)
    train_result = train_model(cfg, trainer, out)
    train_seconds = time.time() - started
    scores = evaluate_run(trainer, enc, data.task)
    result = run_metrics(cfg, data.task, trainer=trainer, train_result=train_result, models=models, enc=enc,
                         augmenter=augmenter, teacher_id=teacher_id, args=args, scores=scores, started=started,
                         train_seconds=train_seconds)
    save_run(cfg, trainer, models.tokenizer, data, out, result)
    return result


# ------------------------------------------------------------------------------------ the steps of a run


def start_run(cfg: TrainConfig) -> Path:
    """Check the settings and the output folder, set threads and seeds; returns the output folder."""
    validate(cfg)
    out = _check_output_dir(cfg.output_dir, cfg.resume)
    set_threads(cfg.threads)
    set_seed(cfg.seed)
    if not cfg.progress:
        hf_logging.disable_progress_bar()
    return out


@dataclass
class Models:
    """The models of one run and how they tokenize."""

    #: the tokenizer of the model that trains (the student's, or the teacher's in teacher mode)
    tokenizer: Any
    #: the model that trains: the teacher in teacher mode, else the layer-subset student
    model: torch.nn.Module
    #: the fine-tuned teacher a KD student learns from (None for teacher and FT runs)
    teacher: torch.nn.Module | None
    #: the student's re-tokenization of the teacher's text when the two tokenize differently
    retokenize: Retokenizer | None


def load_models(cfg: TrainConfig, data: TaskData) -> Models:
    """The tokenizer, the model that trains and the teacher, checked against ``--max-length``."""
    task = data.task
    retokenize: Retokenizer | None = None
    if cfg.mode == "teacher":
        tokenizer = load_tokenizer(cfg.model, cfg.trust_remote_code)
        model = load_classifier(cfg.model, task, trust_remote_code=cfg.trust_remote_code)
        teacher = None
    else:
        tokenizer = load_tokenizer(cfg.student, cfg.trust_remote_code)
        teacher = None
        if cfg.mode == "kd":
            teacher = load_classifier(cfg.teacher, task, require_head=True, trust_remote_code=cfg.trust_remote_code)
            t_tok = load_tokenizer(cfg.teacher, cfg.trust_remote_code)
            if not same_tokenizer(t_tok, tokenizer):
                check_cross_tokenizer(cfg)
                check_max_length(cfg.max_length, t_tok, teacher)
                retokenize = Retokenizer(t_tok, tokenizer, cfg.max_length,
                                         segments=len(data.train.texts[0]) if len(data.train) else 1)
        model = make_layer_subset_student(load_classifier(cfg.student, task, trust_remote_code=cfg.trust_remote_code),
                                          cfg.student_layers)
    check_max_length(cfg.max_length, tokenizer, model, None if retokenize else teacher)
    return Models(tokenizer=tokenizer, model=model, teacher=teacher, retokenize=retokenize)


def fit_defaults_to_models(cfg: TrainConfig, models: Models) -> TrainConfig:
    """``cfg`` without the defaults version's hidden-state KD where it cannot run: a teacher that
    tokenizes differently from the student (layers are compared position by position). Only the
    version's own value is dropped, with a message; other weights still meet the trainer's error."""
    if models.retokenize is None or not cfg.hidden_weight or cfg.hidden_weight != cfg.default_student()[1]:
        return cfg
    print("augpro: note: hidden-state KD (--hidden-weight, on by default for sentence pairs) is off: the teacher "
          "and the student tokenize differently", file=sys.stderr)
    return replace(cfg, hidden_weight=0.0)


@dataclass
class Encoded:
    """The tokenized splits, in the student's tokenization and, for the teacher, its own."""

    train: EncodedDataset
    dev: EncodedDataset
    val: EncodedDataset | None
    pad_id: int
    #: the teacher's tokenization: the student's, or its own beside it when they differ
    teacher_tokenizer: Any
    teacher_pad_id: int
    teacher_encodings: dict[str, list]


def encode_splits(cfg: TrainConfig, data: TaskData, models: Models) -> Encoded:
    """Tokenize the train, dev and validation rows (and the training rows for the teacher too
    when it tokenizes differently)."""
    tokenizer, retokenize = models.tokenizer, models.retokenize
    train_ds = encode(data.train, tokenizer, cfg.max_length)
    dev_ds = encode(data.dev, tokenizer, cfg.max_length)
    val_ds = encode(data.val, tokenizer, cfg.max_length) if data.val is not None else None
    pad_id = tokenizer.pad_token_id or 0
    # the teacher's tokenization: the student's, or its own beside it when they differ
    t_tok = retokenize.teacher_tokenizer if retokenize else tokenizer
    t_pad = t_tok.pad_token_id or 0
    t_encodings = train_ds.encodings
    if retokenize:
        t_encodings = encode(data.train, t_tok, cfg.max_length).encodings
        train_ds.add_encodings(TEACHER_PREFIX, t_encodings)
    return Encoded(train=train_ds, dev=dev_ds, val=val_ds, pad_id=pad_id, teacher_tokenizer=t_tok,
                   teacher_pad_id=t_pad, teacher_encodings=t_encodings)


def training_arguments(cfg: TrainConfig, out: Path, n_train: int) -> tuple[TrainingArguments, int]:
    """The ``TrainingArguments`` of the run and its total number of optimizer steps."""
    steps_per_epoch = int(np.ceil(n_train / cfg.batch_size))
    total_steps = cfg.max_steps if cfg.max_steps > 0 else int(np.ceil(steps_per_epoch * cfg.epochs))
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=int(cfg.warmup_ratio * total_steps),
        lr_scheduler_type="linear",
        eval_strategy="epoch" if cfg.eval_every_epoch else "no",
        save_strategy="epoch" if cfg.save_checkpoints else "no",
        save_total_limit=None,  # DistillTrainer keeps the newest complete checkpoint only
        logging_steps=max(1, min(50, steps_per_epoch // 4)),
        report_to=["tensorboard"],
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        # batches of similar lengths: far less padding on CPU (SST-2 pads ~45 tokens for a mean of ~13)
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        dataloader_pin_memory=torch.cuda.is_available(),
        # several CPU processes (torchrun / accelerate launch without GPUs): DDP over gloo
        use_cpu=not torch.cuda.is_available() and (int(os.environ.get("WORLD_SIZE", "1")) > 1 or cfg.bf16),
        remove_unused_columns=False,
        disable_tqdm=not cfg.progress,
        label_names=["labels"],
        save_only_model=False,
        bf16=cfg.bf16,
        fp16=cfg.fp16,
    )
    return args, total_steps


@dataclass
class Vocabulary:
    """What augmenters may produce and project onto: a snapshot taken on the CPU before the
    teacher moves to the training device."""

    special: torch.Tensor
    allowed: torch.Tensor
    embedding_table: torch.Tensor


def vocabulary_snapshot(models: Models, enc: Encoded) -> Vocabulary:
    """The special ids, the allowed vocabulary and the embedding table augmenters work in."""
    # augmenters work in the teacher's vocabulary (the shared one, or the teacher's across tokenizers);
    # offline pools are built on the CPU from this snapshot of the table, taken before the teacher moves
    teacher, model = models.teacher, models.model
    vocab_model = teacher if models.retokenize else model
    special = special_ids_tensor(enc.teacher_tokenizer)
    allowed = allowed_vocab_mask(enc.teacher_tokenizer, vocab_model.get_input_embeddings().weight.shape[0])
    emb_source = teacher if teacher is not None else model
    emb_table = emb_source.get_input_embeddings().weight.detach()
    return Vocabulary(special=special, allowed=allowed, embedding_table=emb_table)


def label_with_teacher(cfg: TrainConfig, models: Models, enc: Encoded, args: TrainingArguments) -> str | None:
    """The teacher's logits on the training rows (cached on disk), attached to the training
    set; returns the teacher's fingerprint (None without a teacher)."""
    teacher = models.teacher
    if teacher is None:
        return None
    # label on the training device (the GPU where there is one), not on the CPU the weights
    # were loaded to: the training set, and any pool below, can be tens of thousands of rows
    teacher.to(args.device)
    teacher_id = model_fingerprint(cfg.teacher)
    enc.train.attach("teacher_logits", teacher_logits_cached(teacher, teacher_id, enc.teacher_encodings, cfg,
                                                             enc.teacher_pad_id))
    return teacher_id


def prepare_augmenter(cfg: TrainConfig, data: TaskData, models: Models, enc: Encoded, vocab: Vocabulary,
                      teacher_id: str | None, total_steps: int) -> Augmenter | None:
    """The augmenter of ``--augment`` (None for ``none``), with its offline pool built."""
    teacher = models.teacher
    augmenter = build_augmenter(
        cfg.augment, degree=cfg.degree, embedding_table=vocab.embedding_table,
        alpha=cfg.mix_alpha, granularity=cfg.mix_granularity, eps=cfg.resolved_fgsm_eps,
        projection_table=cfg.projection_table, knn_k=cfg.knn_k)
    if augmenter is not None:
        t_encodings, t_pad = enc.teacher_encodings, enc.teacher_pad_id
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + 17)
        label_pool = None
        # Label an offline pool with the teacher once (cached) when training visits all of it;
        # a short run that sees a fraction of the pool labels only the rows it visits, live.
        visits_all = total_steps * cfg.batch_size >= len(enc.train)
        if teacher is not None and (cfg.pool_labels == "cached" or (cfg.pool_labels == "auto" and visits_all)):
            label_pool = lambda e: teacher_logits_cached(teacher, teacher_id, e, cfg, t_pad)  # noqa: E731
        augmenter.prepare(PrepareContext(
            texts=data.train.texts, input_ids=t_encodings["input_ids"],
            token_type_ids=t_encodings.get("token_type_ids"), tokenizer=enc.teacher_tokenizer,
            max_length=cfg.max_length, copies=cfg.copies, generator=gen, label_pool=label_pool,
            show_progress=cfg.progress, retokenize=models.retokenize))
    return augmenter


def build_trainer(cfg: TrainConfig, task: TaskSpec, args: TrainingArguments, models: Models, enc: Encoded,
                  augmenter: Augmenter | None, vocab: Vocabulary) -> DistillTrainer:
    """The ``DistillTrainer`` (teacher, FT and KD runs alike), printing one line per epoch."""
    trainer = DistillTrainer(
        model=models.model, args=args, train_dataset=enc.train,
        eval_dataset={"val": enc.val, "dev": enc.dev} if enc.val is not None else enc.dev,
        data_collator=Collator(enc.pad_id, task.is_regression, teacher_pad_token_id=enc.teacher_pad_id),
        compute_metrics=lambda p: compute_metrics(task, p.predictions, p.label_ids),
        mode=cfg.mode, teacher=models.teacher, augmenter=augmenter, copies=cfg.copies,
        temperature=cfg.temperature, kd_weight=cfg.kd_weight, ce_weight=cfg.ce_weight,
        aug_weight=cfg.aug_weight, regression=task.is_regression, special_ids=vocab.special, allowed=vocab.allowed,
        aug_seed=cfg.seed, retokenize=models.retokenize, shared_forward=cfg.shared_forward,
        bf16_teacher=cfg.resolved_bf16_teacher(args.device), hidden_weight=cfg.hidden_weight,
        attention_weight=cfg.attention_weight,
    )
    from augpro.console import use_epoch_log

    # one bar and one line per epoch instead of per-step log dicts; --quiet: nothing
    use_epoch_log(trainer, progress=cfg.progress, quiet=not cfg.progress)
    return trainer


def train_model(cfg: TrainConfig, trainer: DistillTrainer, out: Path) -> Any:
    """Train (from the newest complete checkpoint with ``--resume``); returns the ``TrainOutput``."""
    resume_from = last_complete_checkpoint(out) if cfg.resume else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        return trainer.train(resume_from_checkpoint=resume_from)


@dataclass
class Evaluation:
    """The run's scores: the per-epoch history, and the final dev and validation metrics."""

    history: list[dict[str, Any]]
    dev: dict[str, float]
    val: dict[str, float] | None


def evaluate_run(trainer: DistillTrainer, enc: Encoded, task: TaskSpec) -> Evaluation:
    """The per-epoch history, then the final evaluation on dev and on the validation split."""
    history = eval_history(trainer.state.log_history)  # before the final evaluations below log theirs
    dev_metrics = _split_metrics(trainer.evaluate(enc.dev), "eval_", task.metrics)
    val_metrics = _split_metrics(trainer.evaluate(enc.val, metric_key_prefix="val"), "val_", task.metrics) \
        if enc.val is not None else None
    return Evaluation(history=history, dev=dev_metrics, val=val_metrics)


def run_metrics(cfg: TrainConfig, task: TaskSpec, *, trainer: DistillTrainer, train_result: Any, models: Models,
                enc: Encoded, augmenter: Augmenter | None, teacher_id: str | None, args: TrainingArguments,
                scores: Evaluation, started: float, train_seconds: float) -> dict[str, Any]:
    """What ``metrics.json`` holds (and ``run_training`` returns)."""
    return {
        "is_main_process": trainer.is_world_process_zero(),
        "augpro_version": __version__,
        "mode": cfg.mode,
        "task": task.name,
        "dev": scores.dev,
        "val": scores.val,
        "val_examples": len(enc.val) if enc.val is not None else 0,
        "history": scores.history,
        "runtime_s": round(time.time() - started, 2),
        "train_runtime_s": round(train_seconds, 2),
        "train_examples": len(enc.train),
        "dev_examples": len(enc.dev),
        "steps": trainer.state.global_step,
        "parameters": count_parameters(models.model),
        "layers": models.model.config.num_hidden_layers,
        "train_loss": float(train_result.training_loss),
        "augmentation": {**(augmenter.describe() if augmenter else {"method": "none"}),
                         **trainer.augmentation_summary()},
        "teacher": cfg.teacher, "teacher_fingerprint": teacher_id,
        # the teacher's precision as run (``settings.bf16_teacher`` None: the defaults version decided)
        "bf16_teacher": cfg.resolved_bf16_teacher(args.device) if models.teacher is not None else None,
        "cross_tokenizer": models.retokenize is not None,
        "settings": cfg.to_dict(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "world_size": args.world_size,
        "replica_weight_sha256": replica_weight_hashes(trainer.model),
    }


def save_run(cfg: TrainConfig, trainer: DistillTrainer, tokenizer: Any, data: TaskData, out: Path,
             result: dict[str, Any]) -> None:
    """On the main process: the trained model as a standard checkpoint, the training row ids
    and ``metrics.json``; epoch checkpoints go unless ``--save-checkpoints``."""
    if trainer.is_world_process_zero():
        save_model(trainer.model, tokenizer, out)
        write_json_atomic({"ids": data.train.ids}, out / "train_ids.json")
        write_json_atomic(result, out / "metrics.json")
        if not cfg.save_checkpoints:
            for ckpt in out.glob("checkpoint-*"):
                shutil.rmtree(ckpt, ignore_errors=True)


# ------------------------------------------------------------------------------------ a saved model


def evaluate_model(model_dir: str, cfg: TrainConfig) -> dict[str, float]:
    """Dev metrics of a saved classifier on the configured task."""
    if not cfg.progress:  # --quiet: no "Loading weights" bar either
        hf_logging.disable_progress_bar()
    data = load_data(cfg)
    model = load_classifier(model_dir, data.task, require_head=True)
    tokenizer = load_tokenizer(model_dir)
    check_max_length(cfg.max_length, tokenizer, model)
    dev = encode(data.dev, tokenizer, cfg.max_length)
    logits = predict_logits(model, dev.encodings, cfg.eval_batch_size, tokenizer.pad_token_id or 0, cfg.progress,
                            desc="evaluate")
    return compute_metrics(data.task, logits.numpy(), np.asarray(data.dev.labels))
