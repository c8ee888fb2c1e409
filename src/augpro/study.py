"""``augpro study CONFIG.yaml``: a resumable grid of trainings expanded from one YAML file.

YAML format (read with ``yaml.safe_load``; nothing in it is evaluated)::

    output_dir: runs/my-study          # where results.jsonl, teachers/ and runs/ go
    description: free text             # optional, ignored
    base:                              # TrainConfig settings shared by every run
      train-size: 1000                 # flag-style (train-size) or field-style (train_size) keys
      student_layers: 2
    teacher:                           # settings of the teacher runs (mode=teacher), e.g. epochs
      epochs: 3
    grids:                             # each grid: a cartesian product of its list values
      - {task: [sst2, rte], mode: [kd, ft], augment: none, seed: [0, 1, 2]}
      - {task: [sst2, rte], mode: kd, augment: [knn, augpro-mix], degree: [0.1, 0.3], seed: [0, 1, 2]}
      - {task: cola, mode: kd, augment: none, seed: [0, 1, 2],
         teacher: {max-steps: 600}}    # a mapping: teacher settings for this grid only

A grid may hold ``priority: N`` (an integer, default 0; not a training setting): runs of lower
numbers come first, so the column that decides a claim can get all its seeds before the rest.

A top-level ``shared_teachers: FILE`` (a path relative to the config) names one strong teacher
setting per task, trained once on the task's full training split and shared by every study and
grid that names the same file: a run with ``teacher: shared`` learns from its task's teacher
(see :func:`load_shared_teachers`).

A grid's ``teacher`` key is either ``shared``, a teacher folder (every KD run of the grid learns from it, no
teacher is trained) or a mapping of teacher settings that update the ``teacher:`` section for
that grid's runs only (a task that needs a longer teacher budget gets it without changing the
teachers, and so the run ids, of the other grids).

Every key of ``base``, ``teacher`` and each grid must be a :class:`~augpro.config.TrainConfig`
field (unknown keys are a :class:`~augpro.errors.UserError` naming the key and the file); values
are coerced to the field's type (``student_layers: 2`` becomes ``"2"``, ``epochs: 3`` becomes
``3.0``) and every run is checked with :func:`augpro.config.validate` before anything runs. A
run's settings are ``base`` updated by one grid point; the run list is the union of all grids
with duplicates removed. For ``augment: none`` the augmentation-only settings ``degree`` and
``copies`` are normalised to ``None`` and ``1`` (so a grid may list degrees next to ``none``
without creating identical runs).

Each run has a ``run_id``: a short hash of its normalised settings (without ``output_dir``,
``data_dir``, ``progress``, ``threads``, ``resume`` and ``cache``, which do not change results; a
study-trained teacher enters as its own id, not its path; settings equal to TrainConfig's
default are left out, so adding a new setting to TrainConfig keeps old ids valid). Runs are
ordered by seed first, so a half-finished study already has every cell at fewer seeds.

Teachers are trained once per distinct teacher setting (task, data, train_size, seed,
dev_size, max_length, ``model``, batch sizes, plus the ``teacher:`` section) under
``<output_dir>/teachers/<task>-n<size>-s<seed>-<hash>/`` and reused when their ``metrics.json``
exists; their logits are cached on disk by the runner. Student runs go to
``<output_dir>/runs/<run_id>/``; after a run finishes its line is appended to
``<output_dir>/results.jsonl`` (one ``os.write`` of the whole line on an ``O_APPEND`` descriptor,
then ``fsync``), then the run's weights and logs are deleted (``metrics.json``, ``train_ids.json``
and ``train.log`` stay). A run folder without a results line is stale and is re-run from
scratch. On start a torn last line (a kill in the middle of a write) is cut off, and duplicated
run ids are ignored, so no truncated or repeated line is ever counted.

Several workers may run one study at once: start the same ``augpro study CONFIG`` in more
processes on the machine and they split the runs (``flock`` locks: a local disk, not NFS). Each run, and each teacher
while it trains, is claimed with a lock file under ``<output_dir>/.claims/``; a worker skips what
another holds, re-reads ``results.jsonl`` before it starts a run, and trains a later run's teacher
rather than wait for one being trained elsewhere. A claim dies with its process, so a killed
worker's run is simply free again. ``--prune`` needs every worker stopped.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import yaml

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking, one worker at a time is the user's job
    fcntl = None

from augpro.config import TrainConfig, validate
from augpro.errors import UserError

#: the training function; imported on first use (it pulls in torch and transformers), so that
#: ``augpro report`` and ``--dry-run`` stay fast. Tests replace it with a fake.
run_training = None

log = logging.getLogger("augpro.study")

RESULTS_FILE = "results.jsonl"
PRUNED_FILE = "results.pruned.jsonl"
TOP_LEVEL_KEYS = ("output_dir", "base", "teacher", "grids", "description", "name", "shared_teachers")
#: the value of a run's ``teacher`` setting that selects its task's teacher from ``shared_teachers``
SHARED = "shared"
#: keys of a shared-teachers file
SHARED_TEACHER_KEYS = ("dir", "base", "tasks", "description")
#: settings that never change a run's result, left out of run ids
UNHASHED = ("output_dir", "data_dir", "progress", "threads", "resume", "cache")
#: settings the study itself controls for student runs
FORCED = {"save_checkpoints": False, "progress": False, "resume": False}
#: settings a study gives its student runs unless the config sets them (a learning-curve pilot
#: sets ``eval-every-epoch: true``)
STUDY_DEFAULTS = {"eval_every_epoch": False}
#: settings a teacher takes from the student run it serves (the ``teacher:`` section may override)
TEACHER_INHERITS = tuple(k for k in (
    "task", "data_dir", "from_hub", "train_file", "dev_file", "text_columns", "label_column", "regression",
    "train_size", "val_size", "dev_size", "max_length", "model", "seed", "batch_size", "eval_batch_size",
    "trust_remote_code", "defaults_version", "cache", "threads") if k in {f.name for f in fields(TrainConfig)})
#: files of a finished run that stay after its weights are deleted
KEEP_FILES = ("metrics.json", "train_ids.json", "train.log")

_FIELD_TYPES = {f.name: str(f.type) for f in fields(TrainConfig)}


# --------------------------------------------------------------------------- settings


def _coerce(key: str, value: Any, where: str) -> Any:
    """``value`` converted to the type of TrainConfig field ``key`` (or a UserError)."""
    kind = _FIELD_TYPES[key]
    optional = "None" in kind
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: {key} cannot be empty")
    base = kind.split("|")[0].strip()
    bad = UserError(f"{where}: {key} must be {base}, got {value!r}")
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise bad
    if base == "int":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if base == "str":
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            raise bad
        return str(value)
    if base.startswith("dict"):
        if isinstance(value, dict):
            return value
        raise bad
    return value  # pragma: no cover - every field type is handled above


#: settings a teacher section may not hold: a teacher is trained on gold labels, without augmentation
_NOT_FOR_TEACHERS = ("mode", "augment", "degree", "copies", "teacher")


def _teacher_section(section: Any, where: str, path: Path) -> dict[str, Any]:
    """A checked teacher-settings mapping (the top-level ``teacher:`` or a grid's own)."""
    out = _clean_section(section, where, path)
    for k in _NOT_FOR_TEACHERS:
        if k in out:
            raise UserError(f"{path}: {k!r} cannot be set in {where}")
    return out


def _clean_section(section: Any, where: str, path: Path, grid: bool = False) -> dict[str, Any]:
    """A YAML mapping with keys checked against TrainConfig and values coerced (lists kept in grids)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise UserError(f"{path}: {where} must be a mapping of settings")
    names = set(_FIELD_TYPES)
    out: dict[str, Any] = {}
    for key, value in section.items():
        k = str(key).replace("-", "_")
        if k not in names:
            raise UserError(f"{path}: unknown setting {key!r} in {where} (settings are `augpro distill` flags, "
                            "e.g. train-size or train_size)")
        if k == "output_dir":
            raise UserError(f"{path}: output_dir belongs at the top level, not in {where}")
        if k in out:
            raise UserError(f"{path}: setting {key!r} given twice in {where}")
        here = f"{path}: {where}"
        if grid and isinstance(value, list):
            if not value:
                raise UserError(f"{here}: {key} has an empty list")
            out[k] = [_coerce(k, v, here) for v in value]
        else:
            out[k] = _coerce(k, value, here)
    return out


def _hash(obj: Any, n: int = 12) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


_DEFAULTS = TrainConfig().to_dict()
#: what a setting is compared with to decide whether it enters a run id: TrainConfig's defaults,
#: except ``defaults_version``, which is compared with 1 (the version every run had before the
#: setting existed). So a run of an old config keeps its id when the config pins
#: ``defaults-version: 1``, and a run under newer defaults gets a new id instead of an old id
#: whose committed result the new defaults would not reproduce.
_ID_BASELINE = {**_DEFAULTS, "defaults_version": 1}


def _hashed_view(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that identify a run: those that differ from the id baseline (TrainConfig's
    defaults), so that a setting added to TrainConfig later (with a default that keeps the old
    behaviour) does not change the ids of finished runs."""
    return {k: v for k, v in settings.items()
            if k not in UNHASHED and (k not in _ID_BASELINE or v != _ID_BASELINE[k])}


def _check_run(settings: dict[str, Any], where: str) -> None:
    """Every check that can be made without data or models."""
    from augpro.augment import METHODS

    cfg = TrainConfig(**{**settings, "teacher": settings.get("teacher") or "<study teacher>"})
    try:
        validate(cfg)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
    if cfg.mode == "teacher":
        raise UserError(f"{where}: grids hold student runs (mode kd or ft); teachers are trained as needed "
                        "from the `teacher:` section")
    if cfg.augment not in METHODS:
        raise UserError(f"{where}: unknown augment {cfg.augment!r}; choose from {', '.join(METHODS)}")
    if cfg.degree is not None and cfg.augment in ("mixkd", "fgsm"):
        raise UserError(f"{where}: degree does not apply to {cfg.augment}; put it in a grid without degree")


@dataclass
class Teacher:
    """One teacher training, shared by every KD run with the same teacher settings."""

    teacher_id: str
    settings: dict[str, Any]
    folder: Path
    #: a shared teacher (``teacher: shared``): trained once per task for every study naming the same
    #: shared-teachers file; it resumes from its epoch checkpoints instead of restarting
    shared: bool = False

    @property
    def claim_root(self) -> Path:
        """The folder whose ``.claims/`` holds this teacher's claim (a shared teacher's is its own
        folder's parent, so that workers of different studies never train it twice)."""
        return self.folder.parent if self.shared else self.folder.parent.parent


@dataclass
class Run:
    """One student training of the grid."""

    run_id: str
    settings: dict[str, Any]          # full TrainConfig dict (teacher path filled in for KD runs)
    teacher: Teacher | None = None
    #: a grid's ``priority`` (default 0): runs of lower priority numbers all come first (every seed
    #: of the column that decides the headline before the other columns' first seeds)
    priority: int = 0

    def describe(self) -> str:
        s = self.settings
        bits = [str(s["task"] or "custom"), f"n={s['train_size'] if s['train_size'] is not None else 'all'}",
                s["mode"], s["augment"]]
        if s["degree"] is not None:
            bits.append(f"degree={s['degree']:g}")
        if s["copies"] != 1:
            bits.append(f"x{s['copies']}")
        bits.append(f"seed={s['seed']}")
        return " ".join(bits)


@dataclass
class Study:
    path: Path
    output_dir: Path
    runs: list[Run]
    teachers: dict[str, Teacher] = field(default_factory=dict)

    @property
    def results_path(self) -> Path:
        return self.output_dir / RESULTS_FILE


def _expand(grid: dict[str, Any]) -> Iterator[dict[str, Any]]:
    keys = list(grid)
    axes = [grid[k] if isinstance(grid[k], list) else [grid[k]] for k in keys]
    for combo in itertools.product(*axes):
        yield dict(zip(keys, combo))


def _teacher_for(settings: dict[str, Any], teacher_section: dict[str, Any], out: Path) -> Teacher:
    values = {k: settings[k] for k in TEACHER_INHERITS}
    values.update(teacher_section)
    values.update(mode="teacher", augment="none", degree=None, copies=1, teacher=None, save_checkpoints=False,
                  eval_every_epoch=False, progress=False, resume=False)
    full = TrainConfig(**values).to_dict()
    tid = _hash(_hashed_view(full), 8)
    size = full["train_size"] if full["train_size"] is not None else "all"
    folder = out / "teachers" / f"{full['task'] or 'custom'}-n{size}-s{full['seed']}-{tid}"
    full["output_dir"] = str(folder)
    return Teacher(teacher_id=tid, settings=full, folder=folder)


@dataclass
class SharedTeachers:
    """A shared-teachers file: one teacher setting per task, trained once and reused by every study."""

    path: Path
    folder: Path
    base: dict[str, Any]
    tasks: dict[str, dict[str, Any]]


def load_shared_teachers(value: Any, config_path: Path) -> SharedTeachers:
    """Read the ``shared_teachers:`` file a study config names (a path relative to the config's folder).

    Format::

        dir: runs/shared-teachers          # where the teachers go (relative to the working folder)
        base: {epochs: 3, bf16: true}      # settings of every shared teacher
        tasks:                             # one entry per task that has a shared teacher
          sst2: {max-length: 64}
          mrpc: {max-length: 128, epochs: 5}
    """
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{config_path}: shared_teachers must be the path of a shared-teachers YAML file")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = config_path.parent / path
    if not path.is_file():
        raise UserError(f"{config_path}: shared-teachers file {path} not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: a shared-teachers file is a mapping with dir, base and tasks")
    for key in doc:
        if key not in SHARED_TEACHER_KEYS:
            raise UserError(f"{path}: unknown key {key!r}; expected {', '.join(SHARED_TEACHER_KEYS)}")
    if not doc.get("dir"):
        raise UserError(f"{path}: no dir (where the shared teachers go)")
    tasks_raw = doc.get("tasks")
    if not isinstance(tasks_raw, dict) or not tasks_raw:
        raise UserError(f"{path}: tasks must map each task name to its teacher's settings")
    base = _teacher_section(doc.get("base"), "base", path)
    tasks = {str(t): _teacher_section(v, f"tasks.{t}", path) for t, v in tasks_raw.items()}
    return SharedTeachers(path=path, folder=Path(str(doc["dir"])).expanduser(), base=base, tasks=tasks)


def _shared_teacher_for(settings: dict[str, Any], shared: SharedTeachers | None, where: str) -> Teacher:
    """The shared teacher of a student run's task: its settings come from the shared-teachers file
    alone (plus where to read the data), so every study and grid naming the file gets the same one."""
    if shared is None:
        raise UserError(f"{where}: teacher: {SHARED} needs a shared_teachers file at the top of the config")
    task = settings["task"]
    if task not in shared.tasks:
        raise UserError(f"{where}: {shared.path} has no teacher for task {task!r} (it has "
                        f"{', '.join(sorted(shared.tasks))})")
    values = {k: settings[k] for k in ("data_dir", "from_hub", "cache", "threads", "trust_remote_code")}
    values.update(shared.base)
    values.update(shared.tasks[task])
    values.update(mode="teacher", task=task, augment="none", degree=None, copies=1, teacher=None, progress=False,
                  resume=True)
    values.setdefault("save_checkpoints", True)   # a long teacher resumes after a kill
    full = TrainConfig(**values).to_dict()
    try:
        validate(TrainConfig(**full))
    except UserError as exc:
        raise UserError(f"{shared.path}: tasks.{task}: {exc}") from None
    tid = _hash(_hashed_view(full), 8)
    size = full["train_size"] if full["train_size"] is not None else "all"
    folder = shared.folder / f"{task}-n{size}-s{full['seed']}-{tid}"
    full["output_dir"] = str(folder)
    return Teacher(teacher_id=tid, settings=full, folder=folder, shared=True)


def load_study(config_path: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> Study:
    """Parse, validate and expand a study YAML into its run list (nothing is written)."""
    path = Path(config_path)
    if not path.is_file():
        raise UserError(f"study config {path} not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: the study config must be a mapping with base/teacher/grids")
    for key in doc:
        if key not in TOP_LEVEL_KEYS:
            raise UserError(f"{path}: unknown top-level key {key!r}; expected {', '.join(TOP_LEVEL_KEYS)}")
    out = output_dir if output_dir is not None else doc.get("output_dir")
    if not out:
        raise UserError(f"{path}: no output_dir (give it in the YAML or with --output-dir)")
    out = Path(str(out)).expanduser()

    base = _clean_section(doc.get("base"), "base", path)
    shared = load_shared_teachers(doc["shared_teachers"], path) if doc.get("shared_teachers") is not None else None
    teacher_section = _teacher_section(doc.get("teacher"), "the teacher section", path)
    grids_raw = doc.get("grids")
    if grids_raw is None:
        grids_raw = [{}]
    if not isinstance(grids_raw, list) or not grids_raw:
        raise UserError(f"{path}: grids must be a non-empty list of mappings")
    grids, grid_teachers, priorities = [], [], []
    for i, g in enumerate(grids_raw):
        own: dict[str, Any] = {}
        if isinstance(g, dict) and isinstance(g.get("teacher"), dict):
            g = dict(g)
            own = _teacher_section(g.pop("teacher"), f"grids[{i}].teacher", path)
        priority = 0
        if isinstance(g, dict) and "priority" in g:
            g = dict(g)
            priority = g.pop("priority")
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise UserError(f"{path}: grids[{i}].priority must be an integer, got {priority!r}")
        priorities.append(priority)
        grids.append(_clean_section(g, f"grids[{i}]", path, grid=True))
        grid_teachers.append({**teacher_section, **own})

    runs: list[Run] = []
    teachers: dict[str, Teacher] = {}
    seen: set[str] = set()
    for gi, grid in enumerate(grids):
        for point in _expand(grid):
            values = {**STUDY_DEFAULTS, **base, **point}
            values.update(FORCED)
            values["output_dir"] = None
            settings = TrainConfig(**values).to_dict()
            if settings["augment"] == "none":
                settings["degree"], settings["copies"] = None, 1
            where = f"{path}: grids[{gi}] {json.dumps(point, sort_keys=True)}"
            _check_run(settings, where)
            teacher: Teacher | None = None
            hashed = _hashed_view(settings)
            if settings["mode"] == "kd" and settings["teacher"] == SHARED:
                teacher = _shared_teacher_for(settings, shared, where)
                teachers.setdefault(teacher.teacher_id, teacher)
                hashed["teacher"] = f"shared-teacher:{teacher.teacher_id}"
                settings["teacher"] = str(teacher.folder)
            elif settings["mode"] == "kd" and not settings["teacher"]:
                teacher = _teacher_for(settings, grid_teachers[gi], out)
                try:
                    validate(TrainConfig(**teacher.settings))
                except UserError as exc:
                    raise UserError(f"{path}: teacher section of grids[{gi}]: {exc}") from None
                teachers.setdefault(teacher.teacher_id, teacher)
                hashed["teacher"] = f"study-teacher:{teacher.teacher_id}"
                settings["teacher"] = str(teacher.folder)
            elif settings["mode"] == "ft":
                settings["teacher"] = None
                hashed["teacher"] = None
            run_id = _hash(hashed)
            if run_id in seen:
                continue
            seen.add(run_id)
            settings["output_dir"] = str(out / "runs" / run_id)
            runs.append(Run(run_id=run_id, settings=settings, teacher=teacher, priority=priorities[gi]))

    # priority first (a grid's `priority:`, default 0), then seed (a partial study has every cell at
    # fewer seeds), then groups sharing a teacher
    group_order: dict[tuple, int] = {}
    for r in runs:
        group_order.setdefault((r.settings["task"], r.settings["train_size"]), len(group_order))
    runs = sorted(runs, key=lambda r: (r.priority, r.settings["seed"],
                                       group_order[(r.settings["task"], r.settings["train_size"])]))
    return Study(path=path, output_dir=out, runs=runs, teachers=teachers)


# --------------------------------------------------------------------------- results file


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


def _finished_ids(path: Path) -> set[str]:
    return {row["run_id"] for row in read_results(path)}


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


def _result_line(run: Run, result: dict[str, Any], teacher_metrics: dict[str, Any] | None) -> dict[str, Any]:
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
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


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
              dry_run: bool = False, prune: bool = False) -> int:
    """Run (or resume) the study in ``config_path``; returns the exit code (0, or 130 when interrupted).

    With ``prune``, only move the results lines of runs that are not in the config to
    ``results.pruned.jsonl`` (see :func:`prune_results`) and return.
    """
    if limit is not None and limit < 0:
        raise UserError(f"--limit must be at least 0, got {limit}")
    study = load_study(config_path, output_dir)
    resume_cmd = f"augpro study {config_path}" + (f" --output-dir {output_dir}" if output_dir is not None else "")
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
    if dry_run:
        _stale_notice(study, resume_cmd)
        done_ids = _finished_ids(study.results_path)
        todo = [r for r in study.runs if r.run_id not in done_ids]
        print(f"{study.path}: {len(study.runs)} runs ({len(study.runs) - len(todo)} finished, {len(todo)} to run), "
              f"{len(study.teachers)} teachers, output {study.output_dir}")
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
    _stale_notice(study, resume_cmd)
    done_ids = _finished_ids(results_path)
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
            done_ids = _finished_ids(results_path)
            pending = [r for r in pending if r.run_id not in done_ids]
            ran, waiting = False, False
            for run in pending:
                claim = _claim(study.output_dir, run.run_id)
                if claim is None:
                    continue  # another worker is running it
                with claim:
                    if run.run_id in _finished_ids(results_path):
                        _drop_claim(study.output_dir, run.run_id)
                        continue  # another worker finished it after the list above was read
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
                    row = _result_line(run, result, t_metrics)
                    append_line(results_path, row)  # before the claim goes: a later claimant sees it done
                    _drop_claim(study.output_dir, run.run_id)
                current = None
                finished += 1
                _clear_run_folder(folder)
                bar.update(1)
                tqdm.write(_summary(len(_finished_ids(results_path)), total, run, row))
                ran = True
                break  # back to the first pending run: earlier runs keep priority
            if not ran:
                if not waiting:
                    break  # everything left is being run by other workers
                bar.set_postfix_str("waiting for a teacher another worker is training", refresh=True)
                time.sleep(WAIT_POLL_S)
    except KeyboardInterrupt:
        bar.close()
        print(f"\naugpro study: interrupted; {len(_finished_ids(results_path))} of {total} runs are finished and "
              f"kept in {results_path}. Resume with: {resume_cmd}", file=sys.stderr)
        return 130
    except BaseException as exc:
        bar.close()
        what = f"run {current.run_id} ({current.describe()})" if current is not None else "the study"
        if isinstance(exc, UserError):
            raise UserError(f"{what}: {exc}") from None
        print(f"augpro study: {what} failed; {len(_finished_ids(results_path))} of {total} runs are finished. Fix "
              f"the cause and resume with: {resume_cmd}", file=sys.stderr)
        raise
    bar.close()
    n_now = len(_finished_ids(results_path) & {r.run_id for r in study.runs})
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
