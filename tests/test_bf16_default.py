"""bf16 teacher inference as the default of defaults version 3, where the device has native bf16.

* :func:`augpro.precision.native_bf16` reads the device's capability (CUDA bf16 without
  emulation; AVX512-BF16 or AMX on CPUs; nothing else);
* ``TrainConfig.bf16_teacher`` None lets the defaults version decide: False before version 3,
  native bf16 from version 3 on; an explicit True/False always wins;
* ``--bf16-teacher`` / ``--no-bf16-teacher`` / neither on the command line;
* the teacher-logit cache, the trainer and ``metrics.json`` all use the resolved value;
* run ids of grids that pin version 2 (or 1) are those they had before version 3 existed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

import augpro.precision as precision
from augpro.config import DEFAULTS_CHANGES, DEFAULTS_VERSION, FGSM_EPS_DEFAULT, TrainConfig
from conftest import tiny_classifier


def _native(monkeypatch, value: bool) -> list:
    """Make native_bf16 answer ``value`` and record the devices it is asked about."""
    asked: list = []

    def fake(device):
        asked.append(torch.device(device))
        return value

    monkeypatch.setattr(precision, "native_bf16", fake)
    return asked


# ----------------------------------------------------------------------------- defaults version 3
def test_version_3_describes_the_bf16_teacher_and_later_versions_keep_it():
    assert DEFAULTS_VERSION >= 3 and DEFAULTS_VERSION == max(FGSM_EPS_DEFAULT) == max(DEFAULTS_CHANGES)
    assert FGSM_EPS_DEFAULT[3] == FGSM_EPS_DEFAULT[2] == 0.1
    text = DEFAULTS_CHANGES[3]
    for word in ("bf16", "native", "CUDA", "AVX512-BF16", "AMX", "fp32", "--no-bf16-teacher"):
        assert word in text
    assert TrainConfig().defaults_version == DEFAULTS_VERSION and TrainConfig().bf16_teacher is None
    assert TrainConfig(augment="fgsm").resolved_fgsm_eps == 0.1


# ----------------------------------------------------------------------------- native_bf16
def test_native_bf16_on_cpus_follows_the_cpu_probes(monkeypatch):
    for avx, amx, want in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert precision.native_bf16("cpu") is want
        assert precision.native_bf16(torch.device("cpu")) is want
    # a torch without the private probes: not known to be native
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert precision.native_bf16("cpu") is False


def test_native_bf16_on_cuda_does_not_count_emulation(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.native_bf16("cuda") is False
    calls = []

    def supported(including_emulation: bool = True) -> bool:
        calls.append(including_emulation)
        return not including_emulation and answer[0]

    answer = [True]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert precision.native_bf16("cuda") is True
    answer[0] = False
    assert precision.native_bf16("cuda") is False
    assert calls == [False, False]


def test_native_bf16_elsewhere_is_false():
    assert precision.native_bf16("meta") is False
    assert precision.native_bf16("mps") is False


# ----------------------------------------------------------------------------- the resolver
@pytest.mark.parametrize("version", sorted(FGSM_EPS_DEFAULT))
@pytest.mark.parametrize("native", [True, False])
def test_an_explicit_setting_wins(monkeypatch, version, native):
    asked = _native(monkeypatch, native)
    for flag in (True, False):
        cfg = TrainConfig(bf16_teacher=flag, defaults_version=version)
        assert cfg.bf16_teacher is flag and cfg.resolved_bf16_teacher("cpu") is flag
    assert asked == []


@pytest.mark.parametrize("version", [1, 2])
def test_versions_1_and_2_keep_the_teacher_in_fp32(monkeypatch, version):
    asked = _native(monkeypatch, True)
    cfg = TrainConfig(defaults_version=version)
    assert cfg.bf16_teacher is False and cfg.to_dict()["bf16_teacher"] is False  # settled, as it always read
    assert cfg.resolved_bf16_teacher("cpu") is False
    cfg.bf16_teacher = None  # even when left open after construction
    assert cfg.resolved_bf16_teacher("cpu") is False
    assert asked == []


def test_version_3_follows_native_bf16_of_the_device(monkeypatch):
    cfg = TrainConfig()
    asked = _native(monkeypatch, True)
    assert cfg.resolved_bf16_teacher("cpu") is True
    asked = _native(monkeypatch, False)
    assert cfg.resolved_bf16_teacher(torch.device("cuda", 0)) is False
    assert asked == [torch.device("cuda", 0)]
    assert cfg.bf16_teacher is None and cfg.to_dict()["bf16_teacher"] is None


# ----------------------------------------------------------------------------- the command line
def _parsed(*flags: str) -> TrainConfig:
    from augpro.cli import build_parser, config_from_args

    ns = build_parser().parse_args(["distill", "--teacher", "t", "--output-dir", "o", *flags])
    return config_from_args(ns, "kd")


def test_cli_bf16_teacher_is_tri_state():
    assert _parsed().bf16_teacher is None
    assert _parsed("--bf16-teacher").bf16_teacher is True
    assert _parsed("--no-bf16-teacher").bf16_teacher is False
    assert _parsed("--defaults-version", "3").bf16_teacher is None
    assert _parsed("--defaults-version", "2").bf16_teacher is False
    assert _parsed("--defaults-version", "2", "--bf16-teacher").bf16_teacher is True
    assert _parsed().defaults_version == DEFAULTS_VERSION


def test_cli_help_names_the_default(capsys):
    from augpro.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--bf16-teacher, --no-bf16-teacher" in text
    assert "native bf16" in text and "--defaults-version 3" in text
    assert "{1,2,3,4}" in text


# ----------------------------------------------------------------------------- where it is used
def _encodings(n: int = 12) -> dict[str, list]:
    return {"input_ids": [[101, *range(2000 + i, 2004 + i + i % 3), 102] for i in range(n)]}


def test_the_logit_cache_kind_follows_the_resolved_value(monkeypatch, tmp_path):
    import augpro.runner as runner

    monkeypatch.setenv("AUGPRO_CACHE", str(tmp_path / "cache"))
    teacher = tiny_classifier(seed=3)
    enc = _encodings()
    calls: list[bool] = []
    real = runner.predict_logits

    def counting(*args, **kwargs):
        calls.append(kwargs.get("bf16", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "predict_logits", counting)

    def logits(cfg: TrainConfig) -> torch.Tensor:
        return runner.teacher_logits_cached(teacher, "t", enc, cfg, 0)

    asked = _native(monkeypatch, True)
    auto_bf16 = logits(TrainConfig(progress=False))               # version 3 on a native-bf16 device
    assert calls == [True] and asked == [torch.device("cpu")]     # asked about the teacher's device
    assert torch.equal(logits(TrainConfig(bf16_teacher=True, progress=False)), auto_bf16)  # same key: cached
    assert calls == [True]
    _native(monkeypatch, False)
    auto_fp32 = logits(TrainConfig(progress=False))               # no native bf16: fp32, its own key
    assert calls == [True, False]
    assert torch.equal(logits(TrainConfig(bf16_teacher=False, progress=False)), auto_fp32)
    assert torch.equal(logits(TrainConfig(defaults_version=2, progress=False)), auto_fp32)
    assert calls == [True, False]
    assert not torch.equal(auto_bf16, auto_fp32)


def test_the_trainer_and_metrics_get_the_resolved_value(monkeypatch, tmp_path):
    import augpro.console
    import augpro.runner as runner

    seen = {}

    class Recorder:
        def __init__(self, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(runner, "DistillTrainer", Recorder)
    monkeypatch.setattr(augpro.console, "use_epoch_log", lambda *a, **k: None)
    args = SimpleNamespace(device=torch.device("cpu"), world_size=1)
    models = SimpleNamespace(model=tiny_classifier(layers=1), teacher=tiny_classifier(seed=3), retokenize=None)
    enc = SimpleNamespace(train=[0] * 4, dev=[0] * 2, val=None, pad_id=0, teacher_pad_id=0)
    task = SimpleNamespace(name="sst2", is_regression=False, metrics=("accuracy",))
    vocab = SimpleNamespace(special=None, allowed=None)
    for native in (True, False):
        asked = _native(monkeypatch, native)
        runner.build_trainer(TrainConfig(teacher="t", progress=False), task, args, models, enc, None, vocab)
        assert seen["bf16_teacher"] is native and asked == [torch.device("cpu")]
    runner.build_trainer(TrainConfig(teacher="t", defaults_version=2, progress=False), task, args, models, enc,
                         None, vocab)
    assert seen["bf16_teacher"] is False

    trainer = SimpleNamespace(is_world_process_zero=lambda: True, augmentation_summary=lambda: {},
                              state=SimpleNamespace(global_step=1), model=models.model)
    scores = SimpleNamespace(dev={"score": 0.5}, val=None, history=[])

    def metrics(cfg: TrainConfig, teacher) -> dict:
        m = SimpleNamespace(model=models.model, teacher=teacher, retokenize=None)
        return runner.run_metrics(cfg, task, trainer=trainer, train_result=SimpleNamespace(training_loss=1.0),
                                  models=m, enc=enc, augmenter=None, teacher_id="t", args=args, scores=scores,
                                  started=0.0, train_seconds=1.0)

    _native(monkeypatch, True)
    result = metrics(TrainConfig(teacher="t"), models.teacher)
    assert result["bf16_teacher"] is True and result["settings"]["bf16_teacher"] is None
    assert metrics(TrainConfig(teacher="t", bf16_teacher=False), models.teacher)["bf16_teacher"] is False
    assert metrics(TrainConfig(mode="ft"), None)["bf16_teacher"] is None  # no teacher, no teacher precision


# ----------------------------------------------------------------------------- study run ids
def _run(tmp_path: Path, name: str, base: dict):
    from augpro.study import load_study

    path = tmp_path / f"{name}.yaml"
    grid = [{"task": "sst2", "mode": "kd", "augment": "none", "seed": 0, "teacher": "some/teacher"}]
    path.write_text(yaml.safe_dump({"output_dir": "o", "base": base, "grids": grid}))
    return load_study(str(path)).runs[0]


def test_run_ids_of_pinned_versions_do_not_see_the_new_setting(tmp_path):
    from augpro.study_grid import _hashed_view

    v2 = _run(tmp_path, "v2", {"defaults-version": 2})
    assert v2.settings["bf16_teacher"] is False and "bf16_teacher" not in _hashed_view(v2.settings)
    v2_true = _run(tmp_path, "v2t", {"defaults-version": 2, "bf16-teacher": True})
    assert _hashed_view(v2_true.settings)["bf16_teacher"] is True
    v1 = _run(tmp_path, "v1", {"defaults-version": 1})
    assert _hashed_view(v1.settings) == {k: v for k, v in _hashed_view(v2.settings).items()
                                         if k != "defaults_version"}
    v3 = _run(tmp_path, "v3", {"defaults-version": 3})
    view = _hashed_view(v3.settings)
    assert view["defaults_version"] == 3 and view["bf16_teacher"] is None  # "native bf16 decides" is a setting
    v3_false = _run(tmp_path, "v3f", {"defaults-version": 3, "bf16-teacher": False})
    assert len({v1.run_id, v2.run_id, v2_true.run_id, v3.run_id, v3_false.run_id}) == 5
