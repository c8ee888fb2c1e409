"""The benchmark package imports and every figure runs in its tiny configuration.

Numbers are never checked (timings on a shared machine mean nothing here); only that each figure
runs end to end and reports its ratios and targets.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import FIGURES  # noqa: E402
from benchmarks import _common as C  # noqa: E402

#: ratios each figure must report (targets included)
EXPECTED = {
    "step_overhead": {"augpro_mix_vs_mixkd", "augpro_fgsm_vs_mixkd", "augpro_mix_separate_vs_mixkd",
                      "augpro_fgsm_separate_vs_mixkd", "knn_vs_mixkd", "knn_shared_vs_mixkd"},
    "projection": {"projection_vs_gemm", "projection_vs_cdist", "pruned_agreement", "exact_agreement_vs_v0"},
    "token_augment": {"knn_vs_nlpaug", "synonym_vs_nlpaug"},
    "teacher_cache": {"cached_teacher_speedup"},
    "memory": {"augpro_mix_rss"},
    "bf16": {"bf16_teacher_speedup", "bf16_teacher_agreement", "bf16_student_step_speedup", "bf16_step_speedup"},
    "whole_run": {"run_cost_vs_fp32"},
}


def test_every_figure_module_imports():
    for name in FIGURES:
        module = importlib.import_module(f"benchmarks.{name}")
        assert callable(module.run)
        assert {"tiny", "quick", "full"} <= set(module.SIZES)


def test_main_parses_arguments():
    main = importlib.import_module("benchmarks.__main__")
    with pytest.raises(SystemExit):
        main.main(["--help"])


@pytest.mark.parametrize("name", [
    "step_overhead",
    pytest.param("projection", marks=pytest.mark.slow),
    "token_augment",
    "teacher_cache",
    pytest.param("memory", marks=pytest.mark.slow),
    pytest.param("bf16", marks=pytest.mark.slow),
    pytest.param("whole_run", marks=pytest.mark.slow),
])
def test_figure_runs_tiny(name, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("AUGPRO_DATA_DIR", data_dir)
    if name == "token_augment":
        pytest.importorskip("nlpaug", reason="nlpaug is in the bench extra")
        from augpro.errors import UserError
        from augpro.wordnet import ensure_wordnet

        try:
            ensure_wordnet()
        except UserError as exc:
            pytest.skip(f"WordNet unavailable offline ({exc})")
    report = C.Report()
    importlib.import_module(f"benchmarks.{name}").run(report, "tiny")
    out = capsys.readouterr().out
    assert EXPECTED[name] <= set(report.ratios), out
    for key, op, bound, value, ok in report.targets:
        assert f"TARGET {key} {op} {bound:g} {'PASS' if ok else 'FAIL'}" in out
    assert all(line.split()[2] for line in out.splitlines() if line.startswith("RATIO "))


def test_missing_optional_dependency_is_reported_as_skipped(monkeypatch, capsys):
    """A figure whose optional dependency is missing prints SKIPPED with the reason, no traceback,
    and the run exits 0; token_augment raises that for a missing nlpaug."""
    import types

    import benchmarks

    token_augment = importlib.import_module("benchmarks.token_augment")
    monkeypatch.setitem(sys.modules, "nlpaug", None)  # import nlpaug -> ImportError
    with pytest.raises(C.Skip, match="nlpaug"):
        token_augment.require_optional_dependencies()

    def run(report, mode):
        raise C.Skip("somelib is not installed")

    monkeypatch.setitem(sys.modules, "benchmarks.needs_somelib", types.SimpleNamespace(run=run))
    monkeypatch.setattr(benchmarks, "FIGURES", benchmarks.FIGURES + ("needs_somelib",))
    main = importlib.import_module("benchmarks.__main__")
    assert main.main(["--tiny", "--only", "needs_somelib", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "SKIPPED needs_somelib: somelib is not installed" in captured.out
    assert "Traceback" not in captured.out + captured.err
