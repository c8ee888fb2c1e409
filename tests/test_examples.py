"""Every script in examples/ runs (tiny random models, seconds each), and docs/api.md shows each
of them unchanged, so the documented examples are the ones CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: what each example prints when it worked
EXPECTED = {
    "augment_in_a_loop.py": r"step 2: loss [0-9.]+, changed \[\d+, \d+, \d+, \d+\] of \[\d+, \d+, \d+, \d+\] tokens",
    "distill_trainer_script.py": r"augmentation: \{'realised_degree': 0\.[23]\d*",
    "one_call.py": r"realised degree: 0\.[23]\d*\n.*error: augpro\.distill\(\) got an unknown setting 'lerning_rate'",
}


def test_every_example_is_known_and_documented():
    assert {p.name for p in EXAMPLES} == set(EXPECTED)
    doc = (ROOT / "docs" / "api.md").read_text()
    shown = dict(re.findall(r"<!-- example: examples/(\S+) -->\n```python\n(.*?)\n```", doc, flags=re.S))
    assert set(shown) == set(EXPECTED), "docs/api.md must show every example"
    for name, text in shown.items():
        assert text == (ROOT / "examples" / name).read_text().rstrip("\n"), f"docs/api.md shows an old {name}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path, tmp_path):
    env = {**os.environ, "AUGPRO_CACHE": os.environ["AUGPRO_CACHE"], "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(EXPECTED[path.name], proc.stdout), proc.stdout[-3000:]
    assert not list(tmp_path.iterdir()), "examples write only to temporary folders"
