"""Print a markdown table of dev score and runtime from the metrics.json files under a folder.

    python scripts/runs_table.py runs/sst2-1k-methods
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str) -> None:
    print("| run | mode | augmentation | dev accuracy | realised degree | label-flip rate | steps | runtime (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for path in sorted(Path(folder).glob("*/metrics.json")):
        r = json.loads(path.read_text())
        aug = r.get("augmentation", {})
        deg = aug.get("realised_degree")
        flip = aug.get("label_flip_rate")
        print(f"| {path.parent.name} | {r['mode']} | {aug.get('method', 'none')} | {r['dev']['score']:.4f} | "
              f"{'' if deg is None else f'{deg:.3f}'} | {'' if flip is None else f'{flip:.3f}'} | {r['steps']} | "
              f"{r['runtime_s']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/sst2-1k-methods")
