"""``augpro compare``: the same cells of two result files, paired seed by seed."""

from __future__ import annotations

import json

from augpro.cli import main
from augpro.report_compare import compare


def _write(path, cells: dict[tuple, list[float]], extra: dict | None = None) -> str:
    """cells: (mode, method) -> one score ×100 per seed (seed = position)."""
    lines = []
    for (mode, method), values in cells.items():
        for seed, v in enumerate(values):
            settings = {"task": "sst2", "train_size": 2000, "mode": mode, "augment": method, "seed": seed,
                        **(extra or {})}
            lines.append(json.dumps({"run_id": f"{mode}{method}{seed}", "score": v / 100, "task": "sst2",
                                     "train_size": 2000, "mode": mode, "augment": method, "degree": None,
                                     "copies": 1, "seed": seed, "settings": settings}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _rows(md: str) -> dict[str, list[str]]:
    return {line.split(" | ")[1]: line.split(" | ")[2:] for line in md.splitlines() if line.startswith("| SST-2")}


def test_compare_pairs_cells_over_common_seeds(tmp_path):
    # hidden_weight differs between the files but is constant inside each: it must not split the cells
    a = _write(tmp_path / "a.jsonl", {("kd", "none"): [80, 81, 82, 99], ("kd", "eda"): [70, 75, 80],
                                      ("ft", "none"): [60, 61, 62], ("kd", "knn"): [50, 50, 50]},
               extra={"hidden_weight": 0.0})
    b = _write(tmp_path / "b.jsonl", {("kd", "none"): [70, 71, 72], ("kd", "eda"): [72, 73, 74],
                                      ("ft", "none"): [60, 61, 62], ("kd", "mixkd"): [1, 2, 3]},
               extra={"hidden_weight": 1.0})
    md = compare(a, b, ("strong", "weak"))
    rows = _rows(md)
    # only the cells both ran; A's seed 3 (99) has no pair and is left out of A's mean too
    assert sorted(rows) == ["FT none", "KD eda", "KD none"]
    assert rows["KD none"] == ["81.0 ± 1.0 (n=3)", "71.0 ± 1.0 (n=3)", "**+10.0 [+10.0, +10.0]**", "ahead |"]
    # differences -2, +2, +6: mean +2, sd 4 -> t(2)*4/sqrt(3) = 9.9; 18 seeds would settle it
    assert rows["KD eda"][2:] == ["+2.0 [-7.9, +11.9]", "undecided (~18 seeds at this spread) |"]
    assert rows["FT none"][2:] == ["+0.0 [+0.0, +0.0]", "identical scores |"]
    assert "| column | method | strong | weak | strong − weak (paired) | outcome |" in md
    # the table depends only on the files' content
    assert compare(a, b, ("strong", "weak")) == md


def test_compare_cli_and_errors(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = _write(tmp_path / "a" / "results.jsonl", {("kd", "none"): [80, 81]})
    b = _write(tmp_path / "b" / "results.jsonl", {("kd", "none"): [79, 80]})
    assert main(["compare", a, b]) == 0
    out = capsys.readouterr().out
    assert "| a | b | a − b (paired) |" in out  # default labels: the folders' names
    assert main(["compare", a, b, "--output", str(tmp_path / "c.md")]) == 0
    assert (tmp_path / "c.md").read_text() == out
    c = _write(tmp_path / "c.jsonl", {("ft", "eda"): [1, 2]})
    assert main(["compare", a, c]) == 2
    assert "share no cell with a common seed" in capsys.readouterr().err
    assert main(["compare", a, a]) == 2
    assert "different --labels" in capsys.readouterr().err
    assert main(["compare", a, str(tmp_path / "missing.jsonl"), "--labels", "x", "y"]) == 2
    assert "not found" in capsys.readouterr().err
