"""Word-level augmentation of raw text: WordNet synonym replacement and EDA.

Words are whitespace tokens (``text.split()``); punctuation tokens count as words, but only
alphabetic words (``str.isalpha``) with at least one WordNet synonym (:func:`augpro.wordnet.synonyms`,
no POS tagging) can be replaced or seed an insertion. Text that comes back changed is re-joined with
single spaces; text with no change comes back exactly as given.

* :func:`synonym_replace` at degree ``p`` replaces exactly ``round(p * n_words)`` distinct words
  (sampled uniformly without replacement among the words that have synonyms), each by a
  uniformly drawn synonym, keeping a capitalised first letter. ``changed`` counts replaced words;
  when fewer words have synonyms than asked for, the gap is reported as ``shortfall``.
* :func:`eda` applies ``n = max(1, round(p * n_words))`` operations (none at ``p = 0``) of one of
  EDA's four kinds (Wei & Zou, 2019): ``synonym`` replacement of ``n`` distinct words, random
  ``insert``\\ ion of a synonym of a random word at a random position (``n`` times), random
  ``swap`` of two words (``n`` times) and random ``delete``\\ ion of ``n`` words (never all).
  ``changed`` is a word-level diff: ``max(len(orig), len(new))`` minus the words
  :class:`difflib.SequenceMatcher` matches. So a deletion counts 1, an insertion counts 1 per
  inserted word (a multi-word synonym such as "motion picture" counts 2), a swap of two
  non-adjacent words counts 2 and of two adjacent words 1 (the diff keeps one of them in place),
  and operations that undo each other count 0. Because insertions add words, EDA's ``changed``
  may exceed ``eligible`` (the original word count) on very short texts.

The pooled augmenters :class:`SynonymReplacement` and :class:`EDA` apply these to every text
field of every training example (``copies`` views) and re-tokenize, like
:class:`~augpro.augment.replace.TokenReplacement` does for tokens.
"""

from __future__ import annotations

import difflib
import random
import warnings
from dataclasses import dataclass

import torch

from augpro.augment.base import AugmentContext, AugmentedBatch, Batch, PrepareContext
from augpro.augment.pool import PooledAugmenter, PoolView
from augpro.wordnet import ensure_wordnet, synonyms

#: EDA's four operations
EDA_OPERATIONS: tuple[str, ...] = ("synonym", "insert", "swap", "delete")

#: show a progress bar only above this many examples
_PROGRESS_MIN_EXAMPLES = 2000


@dataclass(frozen=True)
class TextEdit:
    """One augmented text.

    Attributes:
        text: the augmented text (the input itself when nothing changed).
        changed: words changed (see the module docstring for how EDA counts them).
        eligible: words in the original text.
        shortfall: changes that were asked for but impossible (e.g. too few words with synonyms).
    """

    text: str
    changed: int
    eligible: int
    shortfall: int = 0


def _check_degree(degree: float) -> None:
    if not 0.0 <= degree <= 1.0:
        raise ValueError(f"degree must be in [0, 1], got {degree}")


#: word -> its WordNet synonyms, ``()`` for non-alphabetic words: one dict lookup per word on the
#: hot path (the vocabulary of a training set is small; WordNet is fixed for the process)
_WORD_SYNONYMS: dict[str, tuple[str, ...]] = {}


def _synonyms_of(word: str) -> tuple[str, ...]:
    """Synonyms a word may be replaced by (none unless it is alphabetic), memoised per word."""
    syn = _WORD_SYNONYMS.get(word)
    if syn is None:
        syn = _WORD_SYNONYMS[word] = synonyms(word) if word.isalpha() else ()
    return syn


def _has_synonyms(word: str) -> bool:
    return bool(_synonyms_of(word))


def _match_case(original: str, replacement: str) -> str:
    """``replacement`` with a capital first letter when ``original`` starts with one."""
    if original[:1].isupper() and replacement:
        return replacement[0].upper() + replacement[1:]
    return replacement


def word_diff(original: list[str], new: list[str]) -> int:
    """Changed words between two word lists: ``max(len)`` minus the words a diff matches."""
    matcher = difflib.SequenceMatcher(None, original, new, autojunk=False)
    matched = sum(block.size for block in matcher.get_matching_blocks())
    longest = max(len(original), len(new))
    return max(0, min(longest - matched, longest))


def synonym_replace(text: str, degree: float, rng: random.Random) -> TextEdit:
    """Replace exactly ``round(degree * n_words)`` distinct words by WordNet synonyms.

    Words are chosen uniformly without replacement among alphabetic words that have a synonym;
    each gets a uniformly drawn synonym (never the word itself), capitalised when the original
    was. When fewer words have synonyms than asked for, all of them are replaced and the rest is
    reported as ``shortfall``.

    Args:
        text: the input text.
        degree: share of words to replace, in [0, 1].
        rng: the random source (seeded by the caller).
    """
    _check_degree(degree)
    words = text.split()
    if not words:
        return TextEdit(text, 0, 0, 0)
    target = round(degree * len(words))
    if target == 0:
        return TextEdit(text, 0, len(words), 0)
    lookup = _synonyms_of
    candidates = [i for i, w in enumerate(words) if lookup(w)]
    k = min(target, len(candidates))
    new = list(words)
    for i in rng.sample(candidates, k):
        new[i] = _match_case(words[i], rng.choice(lookup(words[i])))
    return TextEdit(" ".join(new) if k else text, k, len(words), target - k)


def _eda_synonym(words: list[str], n: int, rng: random.Random) -> tuple[list[str], int]:
    candidates = [i for i, w in enumerate(words) if _has_synonyms(w)]
    k = min(n, len(candidates))
    replaced: dict[int, str] = {}
    for i in rng.sample(candidates, k):
        replaced[i] = _match_case(words[i], rng.choice(_synonyms_of(words[i])))
    new: list[str] = []
    for i, w in enumerate(words):
        new.extend(replaced[i].split() if i in replaced else [w])
    return new, n - k


def _eda_insert(words: list[str], n: int, rng: random.Random) -> tuple[list[str], int]:
    new = list(words)
    has_syn = [_has_synonyms(w) for w in new]
    shortfall = 0
    for _ in range(n):
        candidates = [i for i, flag in enumerate(has_syn) if flag]
        if not candidates:
            shortfall += 1
            continue
        source = rng.choice(candidates)
        added = rng.choice(_synonyms_of(new[source])).split()
        pos = rng.randint(0, len(new))
        new[pos:pos] = added
        has_syn[pos:pos] = [_has_synonyms(w) for w in added]
    return new, shortfall


def _eda_swap(words: list[str], n: int, rng: random.Random) -> tuple[list[str], int]:
    new = list(words)
    shortfall = 0
    for _ in range(n):
        i = rng.randrange(len(new))
        partners = [j for j, w in enumerate(new) if w != new[i]]
        if not partners:  # every word is the same: no swap can change anything
            shortfall += 1
            continue
        j = rng.choice(partners)
        new[i], new[j] = new[j], new[i]
    return new, shortfall


def _eda_delete(words: list[str], n: int, rng: random.Random) -> tuple[list[str], int]:
    k = min(n, len(words) - 1)  # always keep one word
    drop = set(rng.sample(range(len(words)), k))
    return [w for i, w in enumerate(words) if i not in drop], n - k


_EDA_FUNCS = {"synonym": _eda_synonym, "insert": _eda_insert, "swap": _eda_swap, "delete": _eda_delete}


def eda(text: str, degree: float, rng: random.Random, op: str) -> TextEdit:
    """Apply one of EDA's operations ``max(1, round(degree * n_words))`` times (never at degree 0).

    Args:
        text: the input text.
        degree: EDA's alpha, in [0, 1].
        rng: the random source (seeded by the caller).
        op: ``"synonym"``, ``"insert"``, ``"swap"`` or ``"delete"``.

    ``changed`` is the word-level diff of :func:`word_diff`; ``shortfall`` counts operations that
    were impossible (no word with synonyms, all words equal, deleting the last word).
    """
    _check_degree(degree)
    if op not in _EDA_FUNCS:
        raise ValueError(f"unknown EDA operation {op!r}; choose from {EDA_OPERATIONS}")
    words = text.split()
    if not words:
        return TextEdit(text, 0, 0, 0)
    n = max(1, round(degree * len(words))) if degree > 0 else 0
    if n == 0:
        return TextEdit(text, 0, len(words), 0)
    new, shortfall = _EDA_FUNCS[op](words, n, rng)
    if new == words:
        return TextEdit(text, 0, len(words), shortfall)
    return TextEdit(" ".join(new), word_diff(words, new), len(words), shortfall)


class _TextAugmenter(PooledAugmenter):
    """Shared pool building for word-level text augmenters."""

    degree: float = 0.0
    writes_text = True
    #: total shortfall of the last view built (changes asked for but impossible)
    last_shortfall: int = 0

    def _pick_op(self, rng: random.Random) -> str | None:
        return None

    def _edit(self, text: str, rng: random.Random, op: str | None) -> TextEdit:
        raise NotImplementedError

    def build_view(self, ctx: PrepareContext, copy: int) -> PoolView:
        """Augment every text field of every example and re-tokenize (one pooled copy)."""
        from tqdm.auto import tqdm

        ensure_wordnet()
        rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=ctx.generator)))
        texts: list[tuple[str, ...]] = []
        changed: list[int] = []
        eligible: list[int] = []
        shortfall = 0
        show = ctx.show_progress and len(ctx.texts) > _PROGRESS_MIN_EXAMPLES
        for example in tqdm(ctx.texts, desc=f"{self.name} view {copy}", disable=not show, leave=False):
            op = self._pick_op(rng)
            edits = [self._edit(segment, rng, op) for segment in example]
            texts.append(tuple(e.text for e in edits))
            changed.append(sum(e.changed for e in edits))
            eligible.append(sum(e.eligible for e in edits))
            shortfall += sum(e.shortfall for e in edits)
        self.last_shortfall = shortfall
        if shortfall > 0:
            total = max(1, sum(eligible))
            warnings.warn(
                f"{self.name} view {copy}: {shortfall} of the word changes that degree {self.degree} asks for "
                f"were impossible ({shortfall / total:.4f} of all {sum(eligible)} words: too few words with "
                f"WordNet synonyms, or too few words to swap/delete), so some examples fell short; share of "
                f"words changed over the view: {sum(changed) / total:.4f}",
                stacklevel=2,
            )
        if not texts:
            empty = torch.zeros(0, dtype=torch.long)
            return PoolView.from_lists([], None if ctx.token_type_ids is None else [], empty, empty.clone(), texts=[])
        columns = [list(c) for c in zip(*texts)]
        enc = ctx.tokenizer(*columns, truncation=True, max_length=ctx.max_length)
        token_type_ids = [list(x) for x in enc["token_type_ids"]] if "token_type_ids" in enc else None
        return PoolView.from_lists(
            [list(x) for x in enc["input_ids"]],
            token_type_ids,
            torch.tensor(changed, dtype=torch.long),
            torch.tensor(eligible, dtype=torch.long),
            texts=texts,
        )


    def augment_directly(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                         vocab) -> AugmentedBatch:
        """Edit the words of ``batch`` itself (no pool): decode each row (one text per segment),
        edit it as a pool view would, re-tokenize. The result is padded to its own longest row,
        so its width may differ from the input's (edits add or remove words)."""
        from augpro.retokenize import Retokenizer
        from augpro.vocab import batch_rows

        tok = vocab.tokenizer
        if tok is None:
            raise ValueError(f"{self.name} edits words: pass tokenizer= (rows are decoded, edited, re-tokenized)")
        rows, type_rows = batch_rows(batch)
        pair = (type_rows is not None and any(any(t) for t in type_rows)) or \
            any(r.count(tok.sep_token_id) >= 2 for r in rows)
        limit = tok.model_max_length if isinstance(tok.model_max_length, int) and tok.model_max_length < 100_000 else 512
        max_length = max(limit, batch["input_ids"].shape[1])
        texts = Retokenizer(tok, tok, max_length, 2 if pair else 1).texts(rows, type_rows)
        view = self.build_view(PrepareContext(texts=texts, input_ids=rows, token_type_ids=type_rows, tokenizer=tok,
                                              max_length=max_length, copies=1, generator=generator,
                                              show_progress=False), 0)
        device = batch["input_ids"].device
        inputs = {k: v.to(device) for k, v in view.gather(torch.arange(len(rows)), tok.pad_token_id or 0).items()
                  if k != "token_type_ids" or "token_type_ids" in batch}
        return AugmentedBatch(student_inputs=inputs, teacher_inputs=inputs, changed=view.changed.to(device),
                              eligible=view.eligible.to(device))


class SynonymReplacement(_TextAugmenter):
    """WordNet synonym replacement at an exact degree into an offline pool (teacher logits cached).

    Args:
        degree: share of words replaced in every text field (exact; shortfalls are reported).
    """

    name = "synonym"

    def __init__(self, degree: float = 0.3):
        _check_degree(degree)
        self.degree = degree

    def _edit(self, text: str, rng: random.Random, op: str | None) -> TextEdit:
        return synonym_replace(text, self.degree, rng)


class EDA(_TextAugmenter):
    """EDA (Wei & Zou, 2019) into an offline pool: one operation per example and copy.

    Args:
        degree: EDA's alpha: ``max(1, round(degree * n_words))`` operations per text field.
        operations: the operations to draw from uniformly (default all four).
    """

    name = "eda"

    def __init__(self, degree: float = 0.1, operations: tuple[str, ...] = EDA_OPERATIONS):
        _check_degree(degree)
        unknown = [op for op in operations if op not in EDA_OPERATIONS]
        if unknown or not operations:
            raise ValueError(f"EDA operations must be a non-empty subset of {EDA_OPERATIONS}, got {operations}")
        self.degree = degree
        self.operations = tuple(operations)

    def _pick_op(self, rng: random.Random) -> str | None:
        return rng.choice(self.operations)

    def _edit(self, text: str, rng: random.Random, op: str | None) -> TextEdit:
        return eda(text, self.degree, rng, op or "synonym")


__all__ = ["EDA", "EDA_OPERATIONS", "SynonymReplacement", "TextEdit", "eda", "synonym_replace", "word_diff"]
