"""The results file of a study (``<output_dir>/results.jsonl``): one JSON line per finished run.

After a run finishes its line (:func:`result_line`) is appended with :func:`append_line`: one
``os.write`` of the whole line on an ``O_APPEND`` descriptor, then ``fsync``, so workers that share
the file never interleave. A run folder without a results line is stale and is re-run from
scratch. On start a torn last line (a kill in the middle of a write) is cut off
(:func:`repair_results`), and duplicated run ids are ignored (:func:`read_results`), so no
truncated or repeated line is ever counted. ``--prune`` moves the lines of runs that are no
longer in the config to ``results.pruned.jsonl`` (:func:`prune_results`) without losing any.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the grid imports this module for RESULTS_FILE
    from augpro.study_grid import Run, Study

log = logging.getLogger("augpro.study")

RESULTS_FILE = "results.jsonl"
PRUNED_FILE = "results.pruned.jsonl"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def repair_results(path: Path) -> bool:
    """Cut a torn last line (no trailing newline) back to the last complete line. True if cut."""
    if not path.exists():
        return False
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return False
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return False
        # find the last newline, reading backwards in blocks
        pos, keep = size, 0
        while pos > 0:
            start = max(0, pos - 65536)
            fh.seek(start)
            block = fh.read(pos - start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    print(f"augpro study: {path}: removed a torn last line ({size - keep} bytes) left by an interrupted write",
          file=sys.stderr)
    return True


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete result lines of a results.jsonl, first occurrence of each run_id, in file order.

    Blank lines, a torn (unterminated) last line and lines that are not JSON objects are skipped.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if not data.endswith(b"\n"):
        lines = lines[:-1]  # an unterminated last line is a torn write
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw in lines:
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s: skipping a line that is not JSON", path)
            continue
        if not isinstance(row, dict) or "run_id" not in row:
            continue
        if row["run_id"] in seen:
            continue
        seen.add(row["run_id"])
        out.append(row)
    return out


def finished_ids(path: Path) -> set[str]:
    """The run ids of the complete lines of a results file."""
    return {row["run_id"] for row in read_results(path)}


def reusable_lines(paths: list[Path], run_ids: set[str]) -> dict[str, dict[str, Any]]:
    """run id -> the finished line of that run in the first of ``paths`` (other studies' results
    files, see the ``reuse:`` key) that has it, marked ``reused_from``; only ids in ``run_ids``."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        for row in read_results(path):
            rid = row["run_id"]
            if rid in run_ids and rid not in out:
                out[rid] = {**row, "reused_from": row.get("reused_from") or str(path)}
    return out


def append_line(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line atomically: a single write on an O_APPEND descriptor, then fsync."""
    _append_bytes(path, (json.dumps(row, sort_keys=True, default=str) + "\n").encode())


def _append_bytes(path: Path, data: bytes) -> None:
    """One write of ``data`` on an O_APPEND descriptor, then fsync (and the folder's, for a new file).

    If the file does not end with a newline (a writer killed mid-line while other workers went on),
    the write starts with one, so the torn fragment stays a line of its own that readers skip
    instead of spoiling the line written after it.
    """
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        written = os.write(fd, data)
        while written < len(data):  # regular files write all at once; a short write is finished here
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)  # the new file's directory entry is durable too


def stale_lines(study: Study) -> list[dict[str, Any]]:
    """Finished lines of ``study``'s results file whose run id is not a run of its config."""
    ids = {r.run_id for r in study.runs}
    return [row for row in read_results(study.results_path) if row["run_id"] not in ids]


def prune_results(study: Study) -> int:
    """Move the lines of runs that are not in the config to ``results.pruned.jsonl``.

    The moved lines are appended (and fsynced) to the pruned file first; then ``results.jsonl`` is
    replaced atomically by a copy without them, so a kill at any point loses no line (at worst a
    line is in both files, and ``read_results`` of the pruned file counts it once). Returns how
    many lines were moved. The caller holds the study lock.
    """
    path = study.results_path
    repair_results(path)
    if not path.exists():
        return 0
    ids = {r.run_id for r in study.runs}
    keep: list[bytes] = []
    moved: list[bytes] = []
    for raw in path.read_bytes().split(b"\n"):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            keep.append(raw)  # not ours to judge: left where it is
            continue
        (moved if isinstance(row, dict) and row.get("run_id") not in ids else keep).append(raw)
    if not moved:
        return 0
    _append_bytes(path.with_name(PRUNED_FILE), b"".join(line + b"\n" for line in moved))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(b"".join(line + b"\n" for line in keep))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return len(moved)


def result_line(run: Run, result: dict[str, Any], teacher_metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The results line of a finished run: its settings, scores, augmentation statistics and teacher."""
    s = run.settings
    aug = result.get("augmentation") or {}
    dev = result.get("dev") or {}
    return {
        "run_id": run.run_id,
        "settings": s,
        "task": s["task"] or "custom",
        "mode": s["mode"],
        "augment": s["augment"],
        "degree": s["degree"],
        "copies": s["copies"],
        "train_size": s["train_size"],
        "seed": s["seed"],
        "dev": dev,
        "score": dev.get("score"),
        # the validation split carved from the training rows (--val-size), and the per-epoch
        # scores when the run evaluated every epoch: what tuning and learning curves may use
        "val": result.get("val"),
        "history": result.get("history") or None,
        "realised_degree": aug.get("realised_degree"),
        "label_flip_rate": aug.get("label_flip_rate"),
        # the settings the augmenter actually used (defaults resolved, e.g. FGSM's eps when the
        # config leaves it to the toolkit): the run folders holding metrics.json are not kept
        "augmentation": aug,
        "runtime_s": result.get("runtime_s"),
        "steps": result.get("steps"),
        "teacher_id": run.teacher.teacher_id if run.teacher else None,
        "teacher_dev": (teacher_metrics or {}).get("dev") if s["mode"] == "kd" else None,
        # the teacher's weights (augpro.models.model_fingerprint): a shared teacher retrained on
        # another machine keeps its id but not, to the bit, its weights (bf16 kernels differ by CPU)
        "teacher_weights": result.get("teacher_fingerprint") if s["mode"] == "kd" else None,
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
