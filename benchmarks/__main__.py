"""``python -m benchmarks --quick|--full [--only FIGURE ...] [--threads N]``.

OpenMP's wait policy is set to PASSIVE unless the environment sets ``OMP_WAIT_POLICY``: on a
machine shared with other work, spinning OpenMP workers of an oversubscribed CPU turn every
parallel region into a scheduling lottery (measured here: 3-20x slower small ops). Set
``OMP_WAIT_POLICY=ACTIVE`` to measure torch's default instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback

# must happen before torch (and its OpenMP runtime) is loaded
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    from benchmarks import FIGURES

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small sizes, few repetitions (under 3 minutes on 2 cores; the default)")
    size.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="the sizes docs/performance.md reports (several minutes)")
    size.add_argument("--tiny", dest="mode", action="store_const", const="tiny",
                      help="tiny random models: checks that every figure runs (numbers meaningless)")
    parser.add_argument("--only", nargs="+", choices=FIGURES, help="run only these figures")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: os.cpu_count())")
    args = parser.parse_args(argv)
    mode = args.mode or "quick"

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers.utils import logging as hf_logging

    from benchmarks import _common as C

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for line in C.machine_header(torch.get_num_threads()):
        print(line)
    print(f"# OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} | mode: {mode} | "
          f"figures: {', '.join(args.only or FIGURES)}", flush=True)

    report = C.Report()
    started = time.perf_counter()
    failed = []
    for name in args.only or FIGURES:
        t0 = time.perf_counter()
        try:
            importlib.import_module(f"benchmarks.{name}").run(report, mode)
        except C.Skip as exc:  # an optional dependency is missing: say so, no traceback
            report.skip(name, str(exc))
        except Exception:  # report and go on: one broken figure must not hide the others
            traceback.print_exc()
            failed.append(name)
        print(f"   [{name}: {time.perf_counter() - t0:.1f} s]", flush=True)

    print("\n== summary")
    for key, value in report.ratios.items():
        print(f"RATIO {key} {value:.3f}")
    for key, op, bound, value, ok in report.targets:
        print(f"TARGET {key} {op} {bound:g} {'PASS' if ok else 'FAIL'}")
    for name, reason in report.skipped.items():
        print(f"SKIPPED {name}: {reason}")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"# total {time.perf_counter() - started:.1f} s | load average at end: {load}")
    if failed:
        print(f"# figures that raised: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
