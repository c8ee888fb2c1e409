"""augpro's speed and memory benchmarks: ``python -m benchmarks --quick|--full``.

One module per figure (each has ``run(report, mode)`` and a ``SIZES`` table for the modes
``tiny`` — the smoke test —, ``quick`` and ``full``):

1. :mod:`benchmarks.step_overhead` — training-step time of KD+AugPro-Mix/-FGSM/knn over KD+MixKD;
2. :mod:`benchmarks.projection` — nearest-token projection vs a plain GEMM and vs ``cdist``;
   peak extra memory; the certified pruned search;
3. :mod:`benchmarks.token_augment` — knn and synonym throughput vs nlpaug's ``SynonymAug``;
4. :mod:`benchmarks.teacher_cache` — KD epoch with cached teacher logits vs a live teacher;
5. :mod:`benchmarks.memory` — peak RSS of a KD+AugPro-Mix run over a KD+MixKD run;
6. :mod:`benchmarks.bf16` — bf16 autocast: teacher labelling speed and agreement, a student step;
7. :mod:`benchmarks.whole_run` — one complete KD run, today's path vs the shared forward + bf16.

Every figure prints ``RATIO <name> <value>`` (absolute times beside it) and, where the project
set one, ``TARGET <name> <op> <bound> PASS|FAIL``; a figure whose optional dependency is missing
prints ``SKIPPED <figure>: <reason>`` and the others run. Timings are interleaved repetitions in one
process, reported as ratios of medians: robust on a shared machine; never assert on them in tests.
"""

FIGURES = ("step_overhead", "projection", "token_augment", "teacher_cache", "memory", "bf16", "whole_run")
