"""Intermediate-layer distillation: hidden states and attention distributions (off by default).

For each student layer ``i`` with its teacher layer ``m(i)``:

* **hidden** (``--hidden-weight``): ``MSE(W h_s^i, h_t^{m(i)})`` over real (non-padding) positions,
  the mean over hidden units; ``W`` is a learned linear projection when the widths differ
  (TinyBERT's ``W_h``, one for all layers), the identity otherwise;
* **attention** (``--attention-weight``): ``KL(A_t^{m(i)} || A_s^i)`` of the self-attention
  distributions, summed over keys and averaged over heads, real query positions and rows
  (TinyBERT distils attention; this is its distribution form). Heads are compared one to one
  when both models have as many, else as the mean over heads.

Each term is the mean over mapped layers. ``h^i`` is the output of transformer block ``i``.
The distributions are recomputed from each block's attention input (``softmax(QK^T/sqrt(d))``
over real keys, before dropout), so they do not depend on the attention implementation (eager,
SDPA) and the student's attention dropout does not reach the target.

The mapping ``m``: a layer-subset student (:func:`augpro.models.make_layer_subset_student`) maps
its layer ``i`` to the teacher layer it was copied from (``--student-layers 2`` of 6: ``0 -> 0``,
``1 -> 5``) when the teacher is as deep as the student's source, else proportionally
(:func:`map_layers`); other students map uniformly (:func:`uniform_map`).

The features come from forward hooks (:class:`LayerTap`) on the forwards the trainer runs
anyway; the teacher runs once more only where its features are not already at hand (cached
logits on the original batch or on a pooled view).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from augpro.errors import UserError
from augpro.models import find_layer_list

#: attribute of the student holding the projection while training (removed before saving)
PROJECTION_ATTR = "augpro_hidden_projection"


def uniform_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer ``i`` -> teacher layer ``round((i + 1) * T / S) - 1`` (the last maps to the last)."""
    return [max(0, round((i + 1) * teacher_layers / student_layers) - 1) for i in range(student_layers)]


def map_layers(kept: Sequence[int], source_layers: int, teacher_layers: int) -> list[int]:
    """Teacher layers of a layer-subset student's layers ``kept`` (indices in a ``source_layers``-deep
    source): the same indices when the teacher is as deep, else the proportional position."""
    if source_layers == teacher_layers:
        return list(kept)
    return [max(0, round((k + 1) * teacher_layers / source_layers) - 1) for k in kept]


def default_layer_map(student: nn.Module, teacher: nn.Module) -> list[int]:
    """The mapping for ``student`` and ``teacher`` (see the module docstring)."""
    teacher_layers = len(find_layer_list(teacher)[2])
    kept = getattr(student, "augpro_kept_layers", None)
    source = getattr(student, "augpro_source_layers", None)
    if kept is not None and source is not None:
        return map_layers(kept, source, teacher_layers)
    return uniform_map(len(find_layer_list(student)[2]), teacher_layers)


def _self_attention(block: nn.Module) -> nn.Module:
    """A block's self-attention module with BERT-style ``query``/``key`` projections."""
    for module in block.modules():
        if all(isinstance(getattr(module, a, None), nn.Linear) for a in ("query", "key")) and \
                hasattr(module, "attention_head_size"):
            return module
    raise UserError(f"--attention-weight needs BERT-style self-attention (query/key projections); "
                    f"{type(block).__name__} has none")


class LayerTap:
    """Forward hooks that keep, for a model's last forward, each block's output (``hidden``) and,
    with ``attention``, each block's self-attention input (``attention_inputs``). ``key`` is the
    ``input_ids``/``inputs_embeds`` tensor of that forward (which inputs the features belong to).

    Args:
        model: a transformer (BERT-family for attention).
        attention: also keep the attention inputs.
    """

    def __init__(self, model: nn.Module, attention: bool = False):
        self.model = model
        self.attention = attention
        self.blocks = list(find_layer_list(model)[2])
        self.attention_modules = [_self_attention(b) for b in self.blocks] if attention else []
        self.hidden: list[torch.Tensor | None] = [None] * len(self.blocks)
        self.attention_inputs: list[torch.Tensor | None] = [None] * len(self.blocks)
        self.key: Any = None
        self._handles: list[Any] = []

    def attach(self) -> "LayerTap":
        self.detach()
        self._handles.append(self.model.register_forward_pre_hook(self._on_model, with_kwargs=True))
        for i, block in enumerate(self.blocks):
            self._handles.append(block.register_forward_hook(self._on_block(i)))
        for i, module in enumerate(self.attention_modules):
            self._handles.append(module.register_forward_pre_hook(self._on_attention(i), with_kwargs=True))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.clear()

    def clear(self) -> None:
        """Drop the kept tensors (they hold the last forward's graph)."""
        self.hidden = [None] * len(self.blocks)
        self.attention_inputs = [None] * len(self.blocks)
        self.key = None

    def _on_model(self, module, args, kwargs):
        self.key = kwargs.get("input_ids", kwargs.get("inputs_embeds", args[0] if args else None))

    def _on_block(self, i: int):
        def hook(module, args, output):
            self.hidden[i] = output[0] if isinstance(output, tuple) else output
        return hook

    def _on_attention(self, i: int):
        def hook(module, args, kwargs):
            self.attention_inputs[i] = args[0] if args else kwargs["hidden_states"]
        return hook

    def probabilities(self, i: int, attention_mask: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s attention distributions ``[B, H, L, L]`` (float32, before dropout), recomputed
        from its attention input; padded keys get probability 0."""
        module = self.attention_modules[i]
        x = self.attention_inputs[i].to(module.query.weight.dtype)  # bf16 features of a bf16-autocast teacher
        B, L, _ = x.shape
        size = module.attention_head_size
        heads = getattr(module, "num_attention_heads", module.query.out_features // size)
        q = module.query(x).view(B, L, heads, size).transpose(1, 2).float()
        k = module.key(x).view(B, L, heads, size).transpose(1, 2).float()
        scores = q @ k.transpose(-1, -2) / math.sqrt(size)
        scores = scores.masked_fill(~attention_mask.bool()[:, None, None, :], float("-inf"))
        return scores.softmax(-1)


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per hidden unit over the real positions of ``mask`` ``[B, L]``."""
    m = mask.bool()
    diff = student.float()[m] - teacher.float()[m]
    return (diff * diff).mean() if diff.numel() else student.sum() * 0


def attention_kl(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``KL(teacher || student)`` over keys, averaged over heads and the real query positions."""
    if student.shape[1] != teacher.shape[1]:  # different head counts: compare the heads' mean
        student, teacher = student.mean(1, keepdim=True), teacher.mean(1, keepdim=True)
    kl = (torch.special.xlogy(teacher, teacher) - teacher * student.clamp_min(1e-12).log()).sum(-1)  # [B, H, L]
    m = mask.bool()[:, None, :].expand_as(kl)
    return kl[m].mean() if m.any() else student.sum() * 0


class LayerDistiller:
    """The intermediate-layer loss of :class:`~augpro.distill.DistillTrainer` (module docstring).

    Args:
        student: the student (a projection is attached to it while training when widths differ).
        teacher: the frozen teacher.
        hidden_weight: weight of the hidden-state MSE.
        attention_weight: weight of the attention KL.
        layer_map: teacher layer of each student layer (default :func:`default_layer_map`).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, hidden_weight: float = 0.0,
                 attention_weight: float = 0.0, layer_map: Sequence[int] | None = None):
        self.student = student
        self.teacher = teacher
        self.hidden_weight = hidden_weight
        self.attention_weight = attention_weight
        self.layer_map = list(layer_map) if layer_map is not None else default_layer_map(student, teacher)
        attention = attention_weight > 0
        self.student_tap = LayerTap(student, attention)
        self.teacher_tap = LayerTap(teacher, attention)
        n_s, n_t = len(self.student_tap.blocks), len(self.teacher_tap.blocks)
        if len(self.layer_map) != n_s or not all(0 <= j < n_t for j in self.layer_map):
            raise UserError(f"layer map {self.layer_map}: need one teacher layer in [0, {n_t - 1}] for each of the "
                            f"student's {n_s} layers")

    @property
    def needs_projection(self) -> bool:
        return self.hidden_weight > 0 and self.student.config.hidden_size != self.teacher.config.hidden_size

    def start(self) -> None:
        """Before training: hooks on, and the projection (widths differ) attached to the student, a
        submodule while it trains, so the optimizer, DDP and checkpoints (resume) include it."""
        self.student_tap.attach()
        self.teacher_tap.attach()
        if self.needs_projection and not hasattr(self.student, PROJECTION_ATTR):
            d_s, d_t = self.student.config.hidden_size, self.teacher.config.hidden_size
            self.student.add_module(PROJECTION_ATTR, nn.Linear(d_s, d_t).to(next(self.student.parameters()).device))

    def stop(self) -> None:
        """After training: hooks off, projection removed (the saved student is a plain checkpoint)."""
        self.student_tap.detach()
        self.teacher_tap.detach()
        if hasattr(self.student, PROJECTION_ATTR):
            delattr(self.student, PROJECTION_ATTR)

    def teacher_features(self, inputs: dict[str, torch.Tensor], run) -> None:
        """Make the teacher tap hold the teacher's features on ``inputs`` (``run`` runs the teacher
        on them, only when its last forward was on other inputs)."""
        key = inputs.get("input_ids", inputs.get("inputs_embeds"))
        if self.teacher_tap.key is not key or self.teacher_tap.hidden[0] is None:
            run(inputs)

    def loss(self, attention_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted loss between the taps' current features (the student's last forward and the
        teacher's), and its parts for the logs; clears the student tap."""
        s, t = self.student_tap, self.teacher_tap
        total = s.hidden[0].new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        if self.hidden_weight > 0:
            proj = getattr(self.student, PROJECTION_ATTR, None)
            terms = [hidden_mse(proj(s.hidden[i]) if proj is not None else s.hidden[i], t.hidden[j], attention_mask)
                     for i, j in enumerate(self.layer_map)]
            hidden = torch.stack(terms).mean()
            total = total + self.hidden_weight * hidden
            parts["loss_hidden"] = float(hidden.detach())
        if self.attention_weight > 0:
            with torch.no_grad():
                targets = [t.probabilities(j, attention_mask) for j in self.layer_map]
            terms = [attention_kl(s.probabilities(i, attention_mask), targets[i], attention_mask)
                     for i in range(len(self.layer_map))]
            attention = torch.stack(terms).mean()
            total = total + self.attention_weight * attention
            parts["loss_attention"] = float(attention.detach())
        s.clear()
        return total, parts
