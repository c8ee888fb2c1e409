"""Paired statistics over seeds, and the verdict rule that decides a claim from them.

In a study a seed fixes the training subset, the student's initialisation and the data order, so
two runs with the same seed in the same column (task, training-set size, other conditions) are a
*pair*: their difference removes what the seed does to both. A comparison of two methods is the
mean of those per-seed differences with a 95 % Student-t interval over the seeds.

The verdict rule (written before the deciding grids finished; ``docs/results.md``):

* a comparison is **ahead** when its interval lies above 0, **behind** when it lies below 0,
  and **undecided** otherwise;
* an undecided comparison says how many paired seeds would put 0 outside an interval of the
  same mean and spread (:func:`seeds_needed`), so a reader knows whether more seeds could settle
  it or the effect is too small to matter;
* a claim is *reproduced* when its comparison is ahead in the claimed direction in most of the
  informative columns, *not reproduced* when it is behind in most of them, and *inconclusive*
  otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

#: the interval's coverage
LEVEL = 0.95
#: the most seeds :func:`seeds_needed` looks for; beyond it the effect is called too small
MAX_SEEDS = 200


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided Student-t critical value for ``df`` degrees of freedom (e.g. 2.776 for df=4)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Paired:
    """The paired differences ``a - b`` over the seeds both sides ran, with a t interval."""

    diffs: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return sum(self.diffs) / self.n if self.n else float("nan")

    @property
    def sd(self) -> float:
        """Standard deviation of the differences (ddof=1; 0 for fewer than 2)."""
        if self.n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((d - m) ** 2 for d in self.diffs) / (self.n - 1))

    @property
    def half_width(self) -> float:
        """Half the width of the 95 % interval (``inf`` with fewer than 2 pairs)."""
        if self.n < 2:
            return math.inf
        return t_quantile(self.n - 1) * self.sd / math.sqrt(self.n)

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def outcome(self) -> str:
        """``"ahead"`` (interval above 0), ``"behind"`` (below 0) or ``"undecided"``."""
        if self.n >= 2 and self.low > 0:
            return "ahead"
        if self.n >= 2 and self.high < 0:
            return "behind"
        return "undecided"

    def text(self, digits: int = 1) -> str:
        """``+1.2 [-0.3, +2.7]`` (mean and 95 % interval), the mean alone with one pair, ``– (n=0)``
        with none (the two sides share no seed)."""
        if self.n == 0:
            return "– (n=0)"
        if self.n < 2:
            return f"{self.mean:+.{digits}f} (n={self.n})"
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def marked(p: Paired, digits: int = 1) -> str:
    """:meth:`Paired.text`, in bold (markdown) when the interval excludes 0."""
    return f"**{p.text(digits)}**" if p.outcome != "undecided" else p.text(digits)


def pair(a: Mapping[object, float], b: Mapping[object, float]) -> Paired:
    """The paired differences ``a[seed] - b[seed]`` over the seeds in both, in seed order."""
    common = sorted(set(a) & set(b), key=repr)
    return Paired(tuple(a[s] - b[s] for s in common))


def seeds_needed(mean: float, sd: float, level: float = LEVEL, max_seeds: int = MAX_SEEDS) -> int | None:
    """The fewest paired seeds whose interval would exclude 0 at this mean and spread.

    Solves ``t(n-1) * sd / sqrt(n) < |mean|`` for the smallest ``n >= 2``; ``None`` when more
    than ``max_seeds`` would be needed (or the mean is 0): the effect is too small to settle with
    seeds at this spread. A spread of 0 needs 2.
    """
    if not math.isfinite(mean) or mean == 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, max_seeds + 1):
        if t_quantile(n - 1, level) * sd / math.sqrt(n) < abs(mean):
            return n
    return None


def describe(p: Paired) -> str:
    """The comparison's outcome in words, with the seeds an undecided one would need."""
    if p.outcome != "undecided":
        return p.outcome
    if p.n < 2:
        return "undecided (fewer than 2 paired seeds)"
    need = seeds_needed(p.mean, p.sd)
    if need is None:
        return f"undecided (>{MAX_SEEDS} seeds at this spread)"
    return f"undecided (~{need} seeds at this spread)"


def claim_verdict(outcomes: Iterable[str]) -> str:
    """The claim's verdict from its comparison's outcome in each informative column.

    *reproduced* when the claimed direction (``ahead``) wins a strict majority of the columns,
    *not reproduced* when ``behind`` does, *inconclusive* otherwise (including no column).
    """
    outcomes = list(outcomes)
    if not outcomes:
        return "inconclusive"
    if sum(o == "ahead" for o in outcomes) * 2 > len(outcomes):
        return "reproduced"
    if sum(o == "behind" for o in outcomes) * 2 > len(outcomes):
        return "not reproduced"
    return "inconclusive"
