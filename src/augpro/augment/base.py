"""The one interface every augmenter implements.

The trainer holds an :class:`Augmenter` and calls ``augment(batch, ctx, generator, copy)``
for each of ``copies`` augmented views of a batch; it never asks which augmenter it holds.
What comes back (:class:`AugmentedBatch`) says how to run the student on the view, where the
teacher's target comes from (inputs to run the teacher on, or logits already known), and how
many positions changed.

Augmenters that need no live model (token replacement, synonyms, EDA) may build an offline pool
of ``copies`` views per training example in :meth:`Augmenter.prepare`, so that the teacher's
logits on the pool are computed once and cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from augpro.data import TEACHER_PREFIX

Batch = dict[str, torch.Tensor]


@dataclass
class AugmentContext:
    """What an augmenter may use at training time.

    Attributes:
        student: the live student (unwrapped from any DDP wrapper).
        teacher: the frozen teacher in eval mode, or ``None`` in FT mode without a teacher.
        mode: ``"kd"`` or ``"ft"``.
        temperature: KD temperature (for gradient-based augmenters).
        regression: whether the task is regression (one output, MSE).
        teacher_logits: returns the teacher's logits on the *original* batch (cached or live).
        special_ids: token ids never changed ([CLS], [SEP], [PAD], [MASK], [UNK], ...).
        allowed: ``[V]`` bool, tokens an augmenter may produce (no special or unused tokens).
        teacher_batch: the original batch in the *teacher's* tokenization when teacher and
            student tokenize differently (``None`` when they share a tokenizer). ``special_ids``
            and ``allowed`` then describe the teacher's vocabulary.
        retokenize: with different tokenizers, a :class:`~augpro.retokenize.Retokenizer` whose
            ``batch()`` turns augmented teacher tokens into the student's inputs (through text).
        input_gradient: ``d loss / d inputs_embeds`` ``[B, L, d]`` of the student's forward on the
            original batch (the loss a gradient-based augmenter differentiates: KD to
            ``teacher_logits``, or the label loss in FT mode), when the trainer took it from its own
            forward (``shared_forward``) for an augmenter with ``gradient_from_forward``; else ``None``.
    """

    student: nn.Module
    teacher: nn.Module | None
    mode: str
    temperature: float
    regression: bool
    teacher_logits: Callable[[Batch], torch.Tensor | None]
    special_ids: torch.Tensor
    allowed: torch.Tensor
    teacher_batch: Batch | None = None
    retokenize: Any = None
    input_gradient: torch.Tensor | None = None


@dataclass
class PrepareContext:
    """What an augmenter may use once before training (building an offline pool).

    Attributes:
        texts: the training texts (one tuple per example, aligned with the encoded dataset).
        input_ids: token ids of every training example (unpadded lists).
        token_type_ids: token type ids (unpadded lists) or ``None``.
        tokenizer: the teacher's (= student's) tokenizer.
        max_length: truncation length.
        copies: how many views per example to build.
        generator: seeded generator for the pool.
        label_pool: computes teacher logits for a list of encoded views (``None`` in FT mode);
            augpro caches them on disk keyed by teacher and content.
        retokenize: with different teacher and student tokenizers, the
            :class:`~augpro.retokenize.Retokenizer`; ``input_ids``/``tokenizer`` are then the
            teacher's, and the pool holds the student's re-tokenized views beside them.
    """

    texts: list[tuple[str, ...]]
    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    tokenizer: Any
    max_length: int
    copies: int
    generator: torch.Generator
    label_pool: Callable[[dict[str, list]], torch.Tensor] | None = None
    show_progress: bool = True
    retokenize: Any = None


@dataclass
class AugmentedBatch:
    """One augmented view of a batch.

    Attributes:
        student_inputs: keyword arguments for the student's forward (``input_ids`` or
            ``inputs_embeds``, with ``attention_mask`` and ``token_type_ids``).
        teacher_inputs: keyword arguments for the teacher's forward on the view, or ``None``
            when ``teacher_logits`` is already known.
        teacher_logits: the teacher's target on the view when known without running it
            (cached pool logits; FGSM's target is the teacher on the original input).
        soft_labels: FT-mode targets that replace the source's gold labels (mixup), or ``None``.
        changed: changed positions per example ``[B]``.
        eligible: positions that could change per example ``[B]`` (real, non-special tokens;
            words for word-level augmenters).
        extra: method-specific statistics (floats), averaged into the logs.
    """

    student_inputs: Batch
    teacher_inputs: Batch | None = None
    teacher_logits: torch.Tensor | None = None
    soft_labels: torch.Tensor | None = None
    changed: torch.Tensor | None = None
    eligible: torch.Tensor | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def degree(self) -> torch.Tensor:
        """Realised share of changed positions per example (0 where nothing was eligible)."""
        if self.changed is None or self.eligible is None:
            return torch.zeros(0)
        return self.changed.float() / self.eligible.clamp(min=1).float()


class _NoContext:
    """Marks "no ``ctx`` given": :meth:`Augmenter.augment` then takes the convenience form."""

    def __repr__(self) -> str:
        return "<none: convenience form>"


_NO_CONTEXT: Any = _NoContext()


def _with_convenience_form(view: Callable[..., AugmentedBatch]) -> Callable[..., Any]:
    """Wrap a subclass's ``augment(batch, ctx, generator, copy)`` so that a call without ``ctx``
    takes the convenience form (:func:`augpro.augment.plain.augment_batch`); a call with a
    ``ctx`` (``None`` included, as pooled augmenters allow) reaches ``view`` unchanged."""

    @functools.wraps(view, assigned=("__module__", "__name__", "__qualname__"))
    def augment(self: "Augmenter", batch: Any, ctx: Any = _NO_CONTEXT, generator: torch.Generator | None = None,
                copy: int = 0, *, teacher: nn.Module | None = None, student: nn.Module | None = None,
                tokenizer: Any = None) -> Any:
        if ctx is not _NO_CONTEXT:
            return view(self, batch, ctx, generator, copy)
        from augpro.augment.plain import augment_batch

        return augment_batch(self, batch, teacher=teacher, student=student, tokenizer=tokenizer, generator=generator)

    del augment.__wrapped__  # help() and inspect.signature show both forms, not only the trainer's
    augment.__annotations__["return"] = "AugmentedBatch | AugmentResult"
    augment.__doc__ = _AUGMENT_DOC + ("\n" + view.__doc__ if view.__doc__ else "")
    augment._augpro_view = view  # type: ignore[attr-defined]
    return augment


_AUGMENT_DOC = """Augment a batch. Two forms:

``augment(batch, *, teacher=None, student=None, tokenizer=None, generator=None)`` (for your own
code): ``batch`` is a tokenizer-style batch (``input_ids``, ``attention_mask``, optional
``token_type_ids``; tensors). Returns an :class:`~augpro.augment.plain.AugmentResult`: a dict with
the batch's keys (new ``input_ids``, or ``inputs_embeds`` for virtual methods) and the per-row
statistics ``changed``, ``eligible`` and ``degree``. Special tokens and padding are never changed.
Special ids and the allowed vocabulary come from ``tokenizer``, else from the models (see
:mod:`augpro.vocab`); ``generator`` defaults to one seeded from torch's global RNG.

``augment(batch, ctx, generator, copy=0)`` (the trainer's form): one augmented view as an
:class:`AugmentedBatch`, given an :class:`AugmentContext`.
"""


class Augmenter:
    """Base class. Subclasses set ``name`` and implement :meth:`augment` in the trainer's form
    ``augment(batch, ctx, generator, copy=0) -> AugmentedBatch``; every subclass's ``augment``
    also takes the convenience form ``augment(batch, *, teacher=, student=, tokenizer=, generator=)``
    (added by ``__init_subclass__``; see :mod:`augpro.augment.plain`).

    Hyperparameters are explicit keyword arguments of ``__init__`` that are only stored there
    (scikit-learn convention); every random draw uses the ``generator`` passed in.
    """

    name: str = "none"
    #: whether :meth:`augment` needs the live teacher/student (embedding-space methods)
    needs_models: bool = False
    #: whether :meth:`augment` can use ``ctx.input_gradient`` instead of a forward of its own
    gradient_from_forward: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("augment")
        if own is not None and not hasattr(own, "_augpro_view"):
            cls.augment = _with_convenience_form(own)

    def prepare(self, ctx: PrepareContext) -> None:
        """Build whatever the augmenter needs before training (default: nothing)."""

    def augment(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                copy: int = 0) -> AugmentedBatch:
        raise NotImplementedError

    def augment_directly(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                         vocab: Any) -> AugmentedBatch:
        """One augmented view of ``batch`` itself, outside any training set: what the convenience
        form of :meth:`augment` runs. Default: the trainer's form (methods that augment each batch
        on the live models); pooled methods override it to augment the batch instead of reading
        their pool. ``vocab`` is the :class:`~augpro.vocab.Vocabulary` in use."""
        return self.augment(batch, ctx, generator, 0)

    def describe(self) -> dict[str, Any]:
        """The augmenter's settings, for ``metrics.json``."""
        return {"method": self.name, **{k: v for k, v in vars(self).items()
                                        if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None)))}}


Augmenter.augment = _with_convenience_form(Augmenter.augment)  # type: ignore[method-assign]


def teacher_view(batch: Batch) -> Batch | None:
    """The teacher-tokenized original (``teacher_input_ids`` ... as model inputs), or ``None``
    when the batch carries only the shared tokenization."""
    if TEACHER_PREFIX + "input_ids" not in batch:
        return None
    return {k: batch[TEACHER_PREFIX + k] for k in ("input_ids", "attention_mask", "token_type_ids")
            if TEACHER_PREFIX + k in batch}


def eligible_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: torch.Tensor) -> torch.Tensor:
    """Real positions that hold a non-special token: the only positions augmenters may change."""
    return attention_mask.bool() & ~torch.isin(input_ids, special_ids.to(input_ids.device))


def numpy_rng(generator: torch.Generator):
    """A numpy Generator drawn from a torch generator (for distributions torch cannot seed)."""
    import numpy as np

    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def pick_exact(scores: torch.Tensor, eligible: torch.Tensor, degree: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Select exactly ``round(degree * n_eligible)`` eligible positions per row, highest score first.

    Returns the boolean selection ``[B, L]`` and the per-row count. Rounding is Python's
    ``round`` (half to even), applied per example.
    """
    # float64 product and round-half-to-even: identical to Python's round(degree * n), no Python loop
    k = torch.round(eligible.sum(1).double() * degree).long()
    masked = scores.masked_fill(~eligible, float("-inf"))
    order = masked.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    selected = (ranks < k[:, None]) & eligible
    return selected, k
