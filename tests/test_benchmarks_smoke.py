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
    "step_overhead": {"augpro_mix_vs_mixkd", "augpro_fgsm_vs_mixkd", "knn_vs_mixkd"},
    "projection": {"projection_vs_gemm", "projection_vs_cdist", "pruned_agreement", "exact_agreement_vs_v0"},
    "token_augment": {"knn_vs_nlpaug", "synonym_vs_nlpaug"},
    "teacher_cache": {"cached_teacher_speedup"},
    "memory": {"augpro_mix_rss"},
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
