"""``augpro study CONFIG.yaml``: a resumable grid of trainings expanded from one YAML file.

A study is three steps, each in its own module:

* :mod:`augpro.study_grid`: the YAML format, checked and expanded into runs (:func:`load_study`),
  their teachers (study-trained or shared) and run ids;
* this module: running them (:func:`run_study`), shared between workers;
* :mod:`augpro.study_results`: the results file that records each finished run.

Teachers are trained once per distinct teacher setting and reused when their ``metrics.json``
exists; their logits are cached on disk by the runner. Student runs go to
``<output_dir>/runs/<run_id>/``; after a run finishes its line is appended to
``<output_dir>/results.jsonl``, then the run's weights and logs are deleted (``metrics.json``,
``train_ids.json`` and ``train.log`` stay). A run folder without a results line is stale and is
re-run from scratch.

Several workers may run one study at once: start the same ``augpro study CONFIG`` in more
processes on the machine and they split the runs (``flock`` locks: a local disk, not NFS). Each run, and each teacher
while it trains, is claimed with a lock file under ``<output_dir>/.claims/``; a worker skips what
another holds, re-reads ``results.jsonl`` before it starts a run, and trains a later run's teacher
rather than wait for one being trained elsewhere. A claim dies with its process, so a killed
worker's run is simply free again. ``--prune`` needs every worker stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, one worker at a time is the user's job
    fcntl = None

from augpro.config import TrainConfig
from augpro.errors import UserError
# the grid and the results file: ``augpro.study`` re-exports what it had before they moved
from augpro.study_grid import (FORCED, SHARED, SHARED_TEACHER_KEYS, STUDY_DEFAULTS, TEACHER_INHERITS, TOP_LEVEL_KEYS,
                               UNHASHED, Run, SharedTeachers, Study, Teacher, load_shared_teachers, load_study,
                               select_runs)
from augpro.study_grid import _hashed_view  # noqa: F401 - tests check run ids' hashed settings through augpro.study
from augpro.study_results import (PRUNED_FILE, RESULTS_FILE, append_line, finished_ids, log, prune_results,
                                  read_results, repair_results, result_line, reusable_lines, stale_lines)

__all__ = ["CLAIMS_DIR", "FORCED", "KEEP_FILES", "PRUNED_FILE", "RESULTS_FILE", "Run", "SHARED", "SHARED_TEACHER_KEYS",
           "STUDY_DEFAULTS", "SharedTeachers", "Study", "TEACHER_INHERITS", "TOP_LEVEL_KEYS", "Teacher", "UNHASHED",
           "WAIT_POLL_S", "append_line", "load_shared_teachers", "load_study", "log", "prune_results",
           "read_results", "repair_results", "run_study", "run_training", "stale_lines"]

#: the training function; imported on first use (it pulls in torch and transformers), so that
#: ``augpro report`` and ``--dry-run`` stay fast. Tests replace it with a fake: the scheduler
#: below calls it through this module attribute (:func:`_trainer`).
run_training = None

#: files of a finished run that stay after its weights are deleted
KEEP_FILES = ("metrics.json", "train_ids.json", "train.log")


# --------------------------------------------------------------------------- running


@contextlib.contextmanager
def _quiet(log_path: Path | None) -> Iterator[None]:
    """Library logs down to errors; the Trainer's per-step log dicts (stdout) go to ``log_path``."""
    hf_logging = None
    if "transformers" in sys.modules:  # the real runner is loaded (a fake one needs no transformers)
        from transformers.utils import logging as hf_logging

        old_hf = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
    aug_logger = logging.getLogger("augpro")
    old_aug = aug_logger.level
    aug_logger.setLevel(logging.WARNING)
    sink = open(log_path, "a") if log_path is not None else open(os.devnull, "w")
    try:
        with sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if hf_logging is not None:
            hf_logging.set_verbosity(old_hf)
        aug_logger.setLevel(old_aug)


CLAIMS_DIR = ".claims"
#: seconds between looks when every runnable run waits on a teacher another worker is training
WAIT_POLL_S = 10.0


def _flock(path: Path, exclusive: bool = True, wait: bool = False):
    """An open file holding a ``flock`` on ``path`` (created if missing), or None if another process
    holds a conflicting lock (only when ``wait`` is False). The lock goes with the file: closing it,
    or the death of the process, releases it, so a killed worker never leaves a stale claim."""
    fh = open(path, "a")
    if fcntl is None:  # pragma: no cover - not POSIX
        return fh
    flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(fh.fileno(), flags)
    except OSError:
        fh.close()
        return None
    return fh


def _lock(out: Path):
    """The exclusive study lock (for ``--prune``, which rewrites results.jsonl): no worker may run."""
    fh = _flock(out / ".lock")
    if fh is None:
        raise UserError(f"`augpro study` is running in {out}; stop it (all its workers) first")
    return fh


def _worker_lock(out: Path, results_path: Path):
    """The study lock as a worker holds it: shared, so that more workers can join.

    The first worker takes it exclusively for a moment to cut a torn last line of the results file
    (only a killed writer leaves one, and nobody else is appending then), then shares it.
    """
    fh = _flock(out / ".lock")
    if fh is None:  # other workers are running: they repaired the file when the first one started
        return _flock(out / ".lock", exclusive=False, wait=True)
    repair_results(results_path)
    if fcntl is not None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
    return fh


def _claim(out: Path, name: str):
    """Claim ``name`` (a run id, or ``teacher-<id>``) for this worker; None if another worker has it."""
    folder = out / CLAIMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return _flock(folder / f"{name}.lock")


def _drop_claim(out: Path, name: str) -> None:
    """Delete a claim file whose work is done (its line written, or its teacher's metrics.json), while
    still holding it. A worker that opened the file before it went, and locks it after, finds the
    work done and skips it; so does one that creates a new file."""
    with contextlib.suppress(OSError):
        (out / CLAIMS_DIR / f"{name}.lock").unlink()


def _clear_run_folder(folder: Path) -> None:
    """Delete what a finished run no longer needs (weights, tokenizer, TensorBoard logs)."""
    for item in folder.iterdir():
        if item.name in KEEP_FILES:
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                item.unlink()


def _trainer():
    global run_training
    if run_training is None:
        from augpro.runner import run_training as real

        run_training = real
    return run_training


def _ensure_teacher(teacher: Teacher) -> dict[str, Any]:
    done = teacher.folder / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    if teacher.folder.exists() and not teacher.shared:
        shutil.rmtree(teacher.folder)  # stale: killed before it finished (a shared one resumes instead)
    teacher.folder.mkdir(parents=True, exist_ok=True)
    train = _trainer()
    with _quiet(teacher.folder / "train.log"):
        return train(TrainConfig(**teacher.settings))


def _summary(i: int, total: int, run: Run, row: dict[str, Any]) -> str:
    score = row["score"]
    text = f"[{i}/{total}] {run.run_id} {run.describe()}: score {score:.4f}" if score is not None else \
        f"[{i}/{total}] {run.run_id} {run.describe()}: no score"
    extra = []
    if row["realised_degree"] is not None:
        extra.append(f"realised degree {row['realised_degree']:.3f}")
    if row["label_flip_rate"] is not None:
        extra.append(f"flips {row['label_flip_rate']:.3f}")
    if extra:
        text += " (" + ", ".join(extra) + ")"
    return text + f", {row['runtime_s'] or 0:.0f} s"


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _on_sigterm(signum, frame):  # pragma: no cover - exercised through a subprocess
    raise _Terminated()


def _stale_notice(study: Study, resume_cmd: str) -> None:
    stale = stale_lines(study)
    if stale:
        print(f"augpro study: {len(stale)} line(s) of {study.results_path} belong to no run of this config (an "
              f"earlier version of it?); `augpro report` still counts them. Move them aside with: {resume_cmd} --prune",
              file=sys.stderr)


def run_study(config_path: str, output_dir: str | None = None, limit: int | None = None,
              dry_run: bool = False, prune: bool = False, only: str | None = None) -> int:
    """Run (or resume) the study in ``config_path``; returns the exit code (0, or 130 when interrupted).

    With ``prune``, only move the results lines of runs that are not in the config to
    ``results.pruned.jsonl`` (see :func:`prune_results`) and return. With ``only``, run (or list)
    just the runs it names (:func:`~augpro.study_grid.select_runs`): one cell of a grid, rerun with
    the grid's exact settings and run ids, e.g. into another ``output_dir`` to check a result.
    """
    if limit is not None and limit < 0:
        raise UserError(f"--limit must be at least 0, got {limit}")
    if prune and only is not None:
        raise UserError("--prune works on the whole config; drop --only")
    study = load_study(config_path, output_dir)
    resume_cmd = (f"augpro study {config_path}" + (f" --output-dir {output_dir}" if output_dir is not None else "")
                  + (f" --only {shlex.quote(only)}" if only is not None else ""))
    if prune:
        if dry_run:
            n = len(stale_lines(study))
            print(f"augpro study: --prune would move {n} line(s) of {study.results_path} to {PRUNED_FILE}")
            return 0
        if not study.results_path.exists():
            print(f"augpro study: {study.results_path} does not exist; nothing to prune")
            return 0
        lock = _lock(study.output_dir)
        try:
            n = prune_results(study)
        finally:
            lock.close()
        print(f"augpro study: moved {n} line(s) that belong to no run of {study.path} to "
              f"{study.results_path.with_name(PRUNED_FILE)}")
        return 0
    _stale_notice(study, resume_cmd)
    if only is not None:
        runs = select_runs(study.runs, only)
        if not runs:
            raise UserError(f"--only {only!r} names none of the {len(study.runs)} runs of {config_path}; "
                            f"list them with: augpro study {config_path} --dry-run")
        study = dataclasses.replace(study, runs=runs)
    if dry_run:
        done_ids = finished_ids(study.results_path)
        todo = [r for r in study.runs if r.run_id not in done_ids]
        reusable = reusable_lines(study.reuse, {r.run_id for r in todo})
        n_runs, n_teachers = len(study.runs), len(study.teachers)
        print(f"{study.path}: {n_runs} run{'s' * (n_runs != 1)} ({n_runs - len(todo)} finished, {len(todo)} to run"
              + (f", {len(reusable)} of them finished in a study it reuses" if reusable else "")
              + f"), {n_teachers} teacher{'s' * (n_teachers != 1)}, output {study.output_dir}")
        show: list[Run | None] = list(todo) if len(todo) <= 12 else [*todo[:8], None, *todo[-3:]]
        for r in show:
            print("  ..." if r is None else f"  {r.run_id}  {r.describe()}")
        return 0

    study.output_dir.mkdir(parents=True, exist_ok=True)
    lock = _worker_lock(study.output_dir, study.results_path)
    old_handler = None
    try:
        with contextlib.suppress(ValueError):  # not in the main thread: no handler
            old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
        return _run_all(study, limit, resume_cmd)
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        lock.close()


def _run_all(study: Study, limit: int | None, resume_cmd: str) -> int:
    """Run the unfinished runs of ``study`` in order, sharing them with any other worker.

    Each run is claimed (a lock file under ``.claims/``) before it starts, and skipped when another
    worker holds its claim or has finished it meanwhile. A teacher is claimed the same way while it
    trains: a worker that finds its run's teacher being trained by another worker goes on to later
    runs (training their teacher itself, if it is still missing) and comes back when that teacher
    is done, so two workers train two teachers at once instead of one waiting.
    """
    from tqdm.auto import tqdm

    results_path = study.results_path
    done_ids = finished_ids(results_path)
    todo = [r for r in study.runs if r.run_id not in done_ids]
    total, n_done = len(study.runs), len(study.runs) - len(todo)
    for run in study.runs:  # a kill between a run's line and its clean-up left its weights behind
        folder = Path(run.settings["output_dir"])
        if run.run_id in done_ids and folder.is_dir():
            _clear_run_folder(folder)
    if n_done == total:
        print(f"augpro study: all {total} runs of {study.path} are finished ({results_path})")
        return 0
    goal = len(todo) if limit is None else min(limit, len(todo))
    print(f"augpro study: {total} runs, {n_done} finished, running {goal} -> {results_path}")
    (study.output_dir / "runs").mkdir(parents=True, exist_ok=True)
    teacher_metrics: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=goal, desc="study", unit="run", dynamic_ncols=True, smoothing=0.1)
    current: Run | None = None
    finished = 0
    pending = list(todo)
    try:
        while pending and finished < goal:
            done_ids = finished_ids(results_path)
            pending = [r for r in pending if r.run_id not in done_ids]
            ran, waiting = False, False
            for run in pending:
                claim = _claim(study.output_dir, run.run_id)
                if claim is None:
                    continue  # another worker is running it
                with claim:
                    if run.run_id in finished_ids(results_path):
                        _drop_claim(study.output_dir, run.run_id)
                        continue  # another worker finished it after the list above was read
                    reused = reusable_lines(study.reuse, {run.run_id}).get(run.run_id)
                    if reused is not None:  # the same run, finished in a study this one reuses
                        append_line(results_path, reused)
                        _drop_claim(study.output_dir, run.run_id)
                        finished += 1
                        bar.update(1)
                        tqdm.write(_summary(len(finished_ids(results_path)), total, run, reused)
                                   + f" (reused from {reused['reused_from']})")
                        ran = True
                        break
                    t_metrics = None
                    if run.teacher is None and run.settings["mode"] == "kd":  # a teacher folder named in the YAML
                        given = Path(str(run.settings["teacher"])) / "metrics.json"
                        if given.is_file():
                            with contextlib.suppress(ValueError, OSError):
                                t_metrics = json.loads(given.read_text())
                    if run.teacher is not None:
                        tid = run.teacher.teacher_id
                        if tid not in teacher_metrics:
                            t_claim = _claim(run.teacher.claim_root, f"teacher-{tid}")
                            if t_claim is None:  # another worker is training it: come back later
                                waiting = True
                                continue
                            with t_claim:
                                bar.set_postfix_str(f"teacher {run.teacher.folder.name}", refresh=True)
                                current = run
                                teacher_metrics[tid] = _ensure_teacher(run.teacher)
                                _drop_claim(run.teacher.claim_root, f"teacher-{tid}")
                        t_metrics = teacher_metrics[tid]
                    current = run
                    bar.set_postfix_str(run.describe(), refresh=True)
                    folder = Path(run.settings["output_dir"])
                    if folder.exists():
                        shutil.rmtree(folder)  # stale: started earlier, never got a results line
                    folder.mkdir(parents=True)
                    train = _trainer()
                    with _quiet(folder / "train.log"):
                        result = train(TrainConfig(**run.settings))
                    row = result_line(run, result, t_metrics)
                    append_line(results_path, row)  # before the claim goes: a later claimant sees it done
                    _drop_claim(study.output_dir, run.run_id)
                current = None
                finished += 1
                _clear_run_folder(folder)
                bar.update(1)
                tqdm.write(_summary(len(finished_ids(results_path)), total, run, row))
                ran = True
                break  # back to the first pending run: earlier runs keep priority
            if not ran:
                if not waiting:
                    break  # everything left is being run by other workers
                bar.set_postfix_str("waiting for a teacher another worker is training", refresh=True)
                time.sleep(WAIT_POLL_S)
    except KeyboardInterrupt:
        bar.close()
        print(f"\naugpro study: interrupted; {len(finished_ids(results_path))} of {total} runs are finished and "
              f"kept in {results_path}. Resume with: {resume_cmd}", file=sys.stderr)
        return 130
    except BaseException as exc:
        bar.close()
        what = f"run {current.run_id} ({current.describe()})" if current is not None else "the study"
        if isinstance(exc, UserError):
            raise UserError(f"{what}: {exc}") from None
        print(f"augpro study: {what} failed; {len(finished_ids(results_path))} of {total} runs are finished. Fix "
              f"the cause and resume with: {resume_cmd}", file=sys.stderr)
        raise
    bar.close()
    n_now = len(finished_ids(results_path) & {r.run_id for r in study.runs})
    left = total - n_now
    if not left:
        print(f"augpro study: all {total} runs finished. Summarise with: augpro report {results_path} "
              f"--output DIR")
    elif finished >= goal and limit is not None:
        print(f"augpro study: stopped after {finished} runs (--limit); {left} left. Resume with: {resume_cmd}")
    else:
        print(f"augpro study: this worker is done; other workers are running the last {left} of {total} runs "
              f"(if they were stopped, resume with: {resume_cmd})")
    return 0
