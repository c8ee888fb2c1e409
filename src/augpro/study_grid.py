"""The grid of a study: its YAML file read, checked and expanded into runs, with their teachers and run ids.

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

A top-level ``reuse: [FILE, ...]`` names other study configs (paths relative to this one) whose
finished runs this study takes instead of training them again: a run whose id is finished in one
of their results files gets that line, marked ``reused_from`` (run ids hash every setting that
changes a result, so the same id is the same run; see :func:`augpro.study_results.reusable_lines`).
A study that compares new cells with the baselines of another one pairs with the very same runs.

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

A study-trained teacher is one per distinct teacher setting (task, data, train_size, seed,
dev_size, max_length, ``model``, batch sizes, plus the ``teacher:`` section), under
``<output_dir>/teachers/<task>-n<size>-s<seed>-<hash>/``; student runs go to
``<output_dir>/runs/<run_id>/``. Nothing here writes a file: :func:`load_study` returns the
:class:`Study` that :mod:`augpro.study` runs and :mod:`augpro.study_results` records.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import yaml

from augpro.config import TrainConfig, validate
from augpro.errors import UserError
from augpro.study_results import RESULTS_FILE

TOP_LEVEL_KEYS = ("output_dir", "base", "teacher", "grids", "description", "name", "shared_teachers", "reuse")
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
#: whose committed result the new defaults would not reproduce. ``bf16_teacher`` is compared with
#: False, what versions 1 and 2 settle it to (None, "native bf16 decides", is version 3's).
_ID_BASELINE = {**_DEFAULTS, "defaults_version": 1, "bf16_teacher": False}


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


def select_runs(runs: list[Run], only: str) -> list[Run]:
    """The runs that ``only`` names: every whitespace-separated word of it is a run id or a word of
    the run's :meth:`Run.describe` (``"n=2000 kd augpro-fgsm seed=0"``; order does not matter, and
    ``"kd knn degree=0.3"`` also names the ``x4`` runs of that degree)."""
    words = only.split()
    if not words:
        raise UserError("--only needs at least one word, e.g. --only \"n=2000 kd augpro-fgsm seed=0\"")
    return [r for r in runs if set(words) <= {r.run_id, *r.describe().split()}]


@dataclass
class Study:
    path: Path
    output_dir: Path
    runs: list[Run]
    teachers: dict[str, Teacher] = field(default_factory=dict)
    #: results files of other studies whose finished runs this one takes (the ``reuse:`` key)
    reuse: list[Path] = field(default_factory=list)

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


def _read_mapping(path: Path, not_mapping: str, allowed: tuple[str, ...], unknown: str) -> dict[str, Any]:
    """A YAML file (read with ``yaml.safe_load``) that must be a mapping whose keys are in ``allowed``."""
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: {not_mapping}")
    for key in doc:
        if key not in allowed:
            raise UserError(f"{path}: {unknown} {key!r}; expected {', '.join(allowed)}")
    return doc


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
    doc = _read_mapping(path, "a shared-teachers file is a mapping with dir, base and tasks", SHARED_TEACHER_KEYS,
                        "unknown key")
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


def _reuse_paths(value: Any, config_path: Path) -> list[Path]:
    """The results files of the studies a ``reuse:`` key names (config paths relative to this config)."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise UserError(f"{config_path}: reuse must be a list of study config paths")
    paths = []
    for item in items:
        other = Path(item).expanduser()
        if not other.is_absolute():
            other = config_path.parent / other
        if other.resolve() == config_path.resolve():
            raise UserError(f"{config_path}: reuse names the config itself")
        if not other.is_file():
            raise UserError(f"{config_path}: reuse: study config {other} not found")
        doc = _read_mapping(other, "the study config must be a mapping with base/teacher/grids", TOP_LEVEL_KEYS,
                            "unknown top-level key")
        if not doc.get("output_dir"):
            raise UserError(f"{config_path}: reuse: {other} has no output_dir")
        paths.append(Path(str(doc["output_dir"])).expanduser() / RESULTS_FILE)
    return paths


def load_study(config_path: str | os.PathLike, output_dir: str | os.PathLike | None = None) -> Study:
    """Parse, validate and expand a study YAML into its run list (nothing is written)."""
    path = Path(config_path)
    if not path.is_file():
        raise UserError(f"study config {path} not found")
    doc = _read_mapping(path, "the study config must be a mapping with base/teacher/grids", TOP_LEVEL_KEYS,
                        "unknown top-level key")
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
    return Study(path=path, output_dir=out, runs=runs, teachers=teachers, reuse=_reuse_paths(doc.get("reuse"), path))
