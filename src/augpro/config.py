"""One typed configuration for every training command (teacher, KD, FT).

The CLI's flags and a study YAML's keys are this dataclass's fields (``--train-size`` is
``train_size``). :func:`validate` checks the settings before anything is read or written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from augpro.errors import UserError

if TYPE_CHECKING:
    import torch

MODES = ("teacher", "kd", "ft")

#: the newest set of defaults; ``defaults_version: 1`` restores the first one (see :data:`DEFAULTS_CHANGES`)
DEFAULTS_VERSION = 4
#: what each defaults version changed, for ``--defaults-version`` and the docs
DEFAULTS_CHANGES = {
    1: "the first defaults (plain FGSM eps 1 table std)",
    2: "plain FGSM eps 0.1 table std: at 1 std 5 of 6 SST-2 and 5 of 6 MRPC students predicted the majority class "
       "(docs/results-short-budget.md); 0.1 was measured at the level of KD without augmentation",
    3: "the teacher's inference (cached logits, pool labels, live targets) in bf16 autocast where the device it "
       "runs on has native bf16 (a CUDA GPU with bf16 support, or a CPU with AVX512-BF16 or AMX), fp32 elsewhere "
       "(emulated bf16 is slower than fp32): 1.88x faster teacher labelling, 99.9% argmax agreement with fp32 on "
       "SST-2 dev (docs/performance.md); --no-bf16-teacher keeps fp32",
    4: "students of sentence-pair tasks (MRPC, RTE, STS-B, ...) have 4 layers (--student-layers 4) and KD "
       "students distil the teacher's hidden states (--hidden-weight 1); single-sentence students keep 2 layers "
       "without it. Measured on MRPC with the shared strong teacher (docs/results.md, 'Intermediate-layer KD'): "
       "2-layer students scored below the majority class",
}
#: plain FGSM's step (table std units) when ``--fgsm-eps`` is not given, per defaults version
FGSM_EPS_DEFAULT = {1: 1.0, 2: 0.1, 3: 0.1, 4: 0.1}
#: the first defaults version whose teacher inference is bf16 where the device has native bf16
BF16_TEACHER_SINCE = 3
#: the first defaults version whose student's depth and hidden-state KD depend on the task's type
PAIR_STUDENT_SINCE = 4
#: the student ``student_layers`` / ``hidden_weight`` leave to the defaults version: (layers, hidden-state
#: KD weight) per task type from :data:`PAIR_STUDENT_SINCE` on, and the single-sentence one before it
STUDENT_DEFAULTS = {"single": ("2", 0.0), "pair": ("4", 1.0)}
#: the held-out validation rows are drawn with this fixed seed, so they are the same for every run seed
VAL_SEED = 104729


@dataclass
class TrainConfig:
    """Settings of one training run.

    ``mode``: ``teacher`` fine-tunes ``model`` on gold labels; ``kd`` distils a student from
    ``teacher``; ``ft`` fine-tunes the same student on gold labels without a teacher.
    """

    mode: str = "kd"
    # data
    task: str | None = "sst2"
    data_dir: str | None = None
    from_hub: bool = False
    train_file: str | None = None
    dev_file: str | None = None
    text_columns: str | None = None
    label_column: str | None = None
    regression: bool = False
    train_size: int | None = None
    dev_size: int | None = None         # evaluate on a stratified dev subset (quick checks); default all
    val_size: int | None = None         # carve a validation split of N training rows (tuning without dev)
    max_length: int = 128
    group_by_length: bool = True        # batches of similar lengths (less padding)
    # models
    model: str | None = None            # teacher mode: base checkpoint (default MiniLM-L6-H384)
    teacher: str | None = None          # kd mode: fine-tuned teacher folder or hub name
    student: str | None = None          # kd/ft: base checkpoint the student's layers come from
    # None: the defaults version decides from the task's type (see STUDENT_DEFAULTS)
    student_layers: str | None = None
    trust_remote_code: bool = False
    # optimisation
    seed: int = 0
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 32
    eval_batch_size: int = 128
    learning_rate: float | None = None  # default: 5e-5 teacher, 1e-4 student
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    # losses
    temperature: float = 1.0
    kd_weight: float = 1.0
    ce_weight: float = 0.0
    aug_weight: float = 1.0
    # intermediate-layer KD: hidden-state MSE (augpro.layers); 0 = off, None: the defaults version decides
    hidden_weight: float | None = None
    attention_weight: float = 0.0       # intermediate-layer KD: attention-distribution KL; 0 = off
    # augmentation
    augment: str = "none"
    degree: float | None = None
    copies: int = 1
    mix_alpha: float = 0.4
    mix_granularity: str = "sequence"
    fgsm_eps: float | None = None
    projection_table: str | None = None
    knn_k: int = 16
    pool_labels: str = "auto"           # offline pools: teacher logits cached up front, or live per batch
    # output and running
    output_dir: str | None = None
    resume: bool = False
    save_checkpoints: bool = True
    eval_every_epoch: bool = True
    cache: bool = True
    threads: int | None = None
    bf16: bool = False                  # bf16 autocast for the student (training and evaluation)
    fp16: bool = False
    # bf16 autocast for the teacher's inference (logits, pool labels, live targets); None: the
    # defaults version decides (see resolved_bf16_teacher)
    bf16_teacher: bool | None = None
    shared_forward: bool = False        # one student forward for a batch and its views (DistillTrainer)
    progress: bool = True
    defaults_version: int = DEFAULTS_VERSION  # 1 = the first defaults (old study runs pin it)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # before version 3 the version's answer is fp32 on every device: settled here, so that the
        # settings (metrics.json, study results) of those versions read False as they always did
        if (self.bf16_teacher is None and isinstance(self.defaults_version, int)
                and self.defaults_version < BF16_TEACHER_SINCE):
            self.bf16_teacher = False
        # settled here too, so that every record of a run (metrics.json, study results) holds what ran
        if self.student_layers is None or self.hidden_weight is None:
            layers, hidden = self.default_student()
            if self.student_layers is None:
                self.student_layers = layers
            if self.hidden_weight is None:
                self.hidden_weight = hidden

    def names_pair_task(self) -> bool:
        """Whether the data this config names are sentence pairs: two ``--text-columns`` for custom
        files, else the GLUE task's columns (False for a task name that does not exist: validation
        reports that)."""
        if self.train_file or self.dev_file:
            return bool(self.text_columns) and len(str(self.text_columns).split(",")) == 2
        if not self.task:
            return False
        from augpro.tasks import get_task

        try:
            return get_task(self.task).is_pair
        except UserError:
            return False

    def default_student(self) -> tuple[str, float]:
        """The (``student_layers``, ``hidden_weight``) this config's defaults version gives its task:
        from version 4 on, a sentence-pair task's student keeps 4 layers and distils the teacher's
        hidden states (weight 1; 0 in FT runs, which have no teacher, and with ``shared_forward``,
        which does not combine with it); before it, and for single sentences, 2 layers without."""
        pair = (isinstance(self.defaults_version, int) and self.defaults_version >= PAIR_STUDENT_SINCE
                and self.mode != "teacher" and self.names_pair_task())
        layers, hidden = STUDENT_DEFAULTS["pair" if pair else "single"]
        if self.mode != "kd" or self.shared_forward:
            hidden = 0.0
        return layers, hidden

    def resolved_bf16_teacher(self, device: "torch.device | str") -> bool:
        """Whether the teacher's inference on ``device`` runs under bf16 autocast: ``bf16_teacher``
        when set; else, from defaults version 3 on, whether ``device`` has native bf16
        (:func:`augpro.precision.native_bf16`), and False before it."""
        if self.bf16_teacher is not None:
            return bool(self.bf16_teacher)
        if self.defaults_version < BF16_TEACHER_SINCE:
            return False
        from augpro.precision import native_bf16

        return native_bf16(device)

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-5 if self.mode == "teacher" else 1e-4

    @property
    def resolved_fgsm_eps(self) -> float | None:
        """``fgsm_eps``, or plain FGSM's default of this config's defaults version (``None``: the
        augmenter's own default, e.g. AugPro-FGSM's 4)."""
        if self.fgsm_eps is not None:
            return self.fgsm_eps
        if (self.augment or "").strip().lower() == "fgsm":
            return FGSM_EPS_DEFAULT[self.defaults_version]
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from flag-named keys (``train-size`` or ``train_size``); unknown keys are errors."""
        names = {f.name for f in fields(cls)}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            k = key.replace("-", "_")
            if k not in names:
                raise UserError(f"unknown setting {key!r}")
            clean[k] = value
        return cls(**clean)


def validate(cfg: TrainConfig) -> None:
    """Reject inconsistent settings with a one-line :class:`UserError`."""
    if cfg.mode not in MODES:
        raise UserError(f"mode must be one of {MODES}")
    if cfg.mode == "kd" and not cfg.teacher:
        raise UserError("distillation needs --teacher DIR (train one with `augpro teacher`)")
    if cfg.degree is not None and not 0.0 <= cfg.degree <= 1.0:
        raise UserError(f"--degree must be in [0, 1], got {cfg.degree}")
    for flag, weight in (("--hidden-weight", cfg.hidden_weight), ("--attention-weight", cfg.attention_weight)):
        if not weight >= 0:
            raise UserError(f"{flag} must be at least 0, got {weight}")
        if weight and cfg.mode != "kd":
            raise UserError(f"{flag} distils the teacher's layers: it applies to `augpro distill` only")
        if weight and cfg.shared_forward:
            raise UserError(f"{flag} does not combine with --shared-forward")
    if cfg.copies < 1:
        raise UserError(f"--copies must be at least 1, got {cfg.copies}")
    if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if cfg.epochs <= 0 and cfg.max_steps <= 0:
        raise UserError("--epochs must be positive (or give --max-steps)")
    if cfg.temperature <= 0:
        raise UserError(f"--temperature must be positive, got {cfg.temperature}")
    if cfg.max_length < 8:
        raise UserError(f"--max-length must be at least 8, got {cfg.max_length}")
    if cfg.mix_alpha <= 0:
        raise UserError(f"--mix-alpha must be positive, got {cfg.mix_alpha}")
    if cfg.mix_granularity not in ("sequence", "token"):
        raise UserError("--mix-granularity must be sequence or token")
    if cfg.projection_table not in (None, "teacher", "student"):
        raise UserError("--projection-table must be teacher or student")
    if cfg.pool_labels not in ("auto", "cached", "live"):
        raise UserError("--pool-labels must be auto, cached or live")
    if cfg.augment != "none" and cfg.mode == "teacher":
        raise UserError("augmentation applies to `augpro distill` and `augpro finetune`, not to the teacher")
    if cfg.dev_size is not None and cfg.dev_size <= 0:
        raise UserError(f"--dev-size must be positive, got {cfg.dev_size}")
    if cfg.val_size is not None and cfg.val_size <= 0:
        raise UserError(f"--val-size must be positive, got {cfg.val_size}")
    if cfg.defaults_version not in FGSM_EPS_DEFAULT:
        raise UserError(f"--defaults-version must be one of {sorted(FGSM_EPS_DEFAULT)}, got {cfg.defaults_version}")
    if cfg.train_size is not None and cfg.train_size <= 0:
        raise UserError(f"--train-size must be positive, got {cfg.train_size}")
    if cfg.learning_rate is not None and not cfg.learning_rate > 0:
        raise UserError(f"--learning-rate must be positive, got {cfg.learning_rate}")
    if not 0.0 <= cfg.warmup_ratio <= 1.0:
        raise UserError(f"--warmup-ratio must be in [0, 1], got {cfg.warmup_ratio}")
    if cfg.threads is not None and cfg.threads < 0:
        raise UserError(f"--threads must be at least 1 (or 0 for all cores), got {cfg.threads}")
