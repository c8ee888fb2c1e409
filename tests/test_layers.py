"""Intermediate-layer distillation (--hidden-weight, --attention-weight): the terms against HF's own
hidden states and attention maps, the layer mapping, the learned projection, every augmenter, and
the defaults leaving training untouched. Tiny random BERTs over the real vocabulary."""

from __future__ import annotations

import csv

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

import augpro
from augpro.augment.base import PrepareContext
from augpro.config import TrainConfig, validate
from augpro.errors import UserError
from augpro.layers import (PROJECTION_ATTR, LayerDistiller, attention_kl, default_layer_map, hidden_mse, map_layers,
                           uniform_map)
from augpro.models import make_layer_subset_student

from conftest import tiny_classifier

TEXTS = ["a gorgeous, witty, seductive movie.", "the worst film of the year.",
         "an intelligent and moving story of love and loss", "flat"]


def bert(layers: int, hidden: int = 32, seed: int = 0, heads: int = 2):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, num_labels=2, attn_implementation="eager")
    return BertForSequenceClassification(cfg).eval()


@pytest.fixture(scope="module")
def batch(tokenizer):
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


def test_layer_maps():
    assert uniform_map(2, 6) == [2, 5] and uniform_map(3, 12) == [3, 7, 11] and uniform_map(6, 6) == list(range(6))
    assert map_layers([0, 5], 6, 6) == [0, 5] and map_layers([0, 5], 6, 12) == [1, 11]
    student = make_layer_subset_student(tiny_classifier(layers=6, seed=3), "2")
    assert default_layer_map(student, tiny_classifier(layers=6)) == [0, 5]  # the layers it was copied from
    assert default_layer_map(student, tiny_classifier(layers=3)) == [0, 2]
    assert default_layer_map(tiny_classifier(layers=2), tiny_classifier(layers=6)) == [2, 5]  # not a subset


def test_terms_match_hf_hidden_states_and_attentions(batch):
    """The tapped features are HF's ``output_hidden_states``/``output_attentions`` (eval mode), and the
    loss is exactly the documented mean over mapped layers."""
    teacher, student = bert(4, seed=1), bert(2, seed=2)
    distiller = LayerDistiller(student, teacher, hidden_weight=2.0, attention_weight=3.0, layer_map=[1, 3])
    distiller.start()
    try:
        with torch.no_grad():
            t_out = teacher(**batch, output_hidden_states=True, output_attentions=True)
            s_out = student(**batch, output_hidden_states=True, output_attentions=True)
            mask = batch["attention_mask"]
            for i, j in enumerate([1, 3]):
                assert torch.allclose(distiller.student_tap.probabilities(i, mask), s_out.attentions[i], atol=1e-5)
                assert torch.allclose(distiller.teacher_tap.probabilities(j, mask), t_out.attentions[j], atol=1e-5)
            total, parts = distiller.loss(mask)
        m = mask.bool()
        hidden = torch.stack([((s_out.hidden_states[i + 1] - t_out.hidden_states[j + 1])[m] ** 2).mean()
                              for i, j in enumerate([1, 3])]).mean()
        attn = []
        for i, j in enumerate([1, 3]):
            p, q = t_out.attentions[j], s_out.attentions[i]
            kl = (p * (p.clamp_min(1e-30).log() - q.clamp_min(1e-30).log())).sum(-1)  # [B, H, L]
            attn.append(kl[m[:, None, :].expand_as(kl)].mean())
        attn = torch.stack(attn).mean()
        assert parts["loss_hidden"] == pytest.approx(float(hidden), rel=1e-4)
        assert parts["loss_attention"] == pytest.approx(float(attn), rel=1e-3, abs=1e-6)
        assert float(total) == pytest.approx(2 * float(hidden) + 3 * float(attn), rel=1e-3)
    finally:
        distiller.stop()
    assert not student._forward_hooks and not teacher._forward_pre_hooks


def test_identical_models_give_zero_and_differences_do_not(batch):
    teacher = bert(2, seed=1)
    student = bert(2, seed=1)
    distiller = LayerDistiller(student, teacher, hidden_weight=1.0, attention_weight=1.0)
    distiller.start()
    with torch.no_grad():
        teacher(**batch)
        student(**batch)
        total, parts = distiller.loss(batch["attention_mask"])
        assert parts["loss_hidden"] == pytest.approx(0, abs=1e-10)
        assert parts["loss_attention"] == pytest.approx(0, abs=1e-6)
        student.bert.encoder.layer[1].attention.self.query.weight.normal_(0, 1)  # sharper, different attention
        student(**batch)
        assert distiller.loss(batch["attention_mask"])[1]["loss_attention"] > 1e-3
    distiller.stop()
    # padding never counts
    m = torch.tensor([[1, 1, 0]])
    a, b = torch.zeros(1, 3, 4), torch.zeros(1, 3, 4)
    b[0, 2] = 100.0
    assert float(hidden_mse(a, b, m)) == 0.0
    p = torch.full((1, 1, 3, 3), 1 / 3)
    assert float(attention_kl(p, p, m)) == pytest.approx(0, abs=1e-7)


def _trainer(student, teacher, tokenizer, tmp_path, augmenter=None, **kwargs):
    rows = [dict(tokenizer(t), label=i % 2, idx=i) for i, t in enumerate(TEXTS * 2)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, report_to=[],
                             save_strategy="no", disable_tqdm=True, dataloader_pin_memory=False, logging_steps=1,
                             remove_unused_columns=False, learning_rate=1e-3)
    return augpro.DistillTrainer(model=student, teacher=teacher, augmenter=augmenter, args=args, train_dataset=rows,
                                 processing_class=tokenizer, **kwargs)


def test_defaults_leave_training_untouched(tokenizer, tmp_path):
    student, teacher = tiny_classifier(layers=1, seed=2), tiny_classifier(layers=2, seed=1)
    trainer = _trainer(student, teacher, tokenizer, tmp_path)
    assert trainer.layers is None and trainer.hidden_weight == 0 and trainer.attention_weight == 0
    trainer.train()
    assert not student._forward_hooks and not student._forward_pre_hooks
    assert all("loss_hidden" not in h and "loss_attention" not in h for h in trainer.state.log_history)
    assert TrainConfig().hidden_weight == 0 and TrainConfig().attention_weight == 0


def _pool_augmenter(tokenizer, teacher):
    """A mask pool whose views carry cached teacher logits (the runner's default for pools)."""
    from augpro.runner import predict_logits

    aug = augpro.build_augmenter("mask", degree=0.3)
    enc = tokenizer(TEXTS * 2)
    aug.prepare(PrepareContext(texts=[(t,) for t in TEXTS * 2], input_ids=enc["input_ids"],
                               token_type_ids=enc["token_type_ids"], tokenizer=tokenizer, max_length=64, copies=1,
                               generator=torch.Generator().manual_seed(0), show_progress=False,
                               label_pool=lambda e: predict_logits(teacher, e)))
    return aug


@pytest.mark.filterwarnings("ignore:synonym view")
@pytest.mark.parametrize("method", ["none", "augpro-mix", "augpro-fgsm", "mixkd", "fgsm", "mask", "mask-pool",
                                    "synonym"])
def test_every_augmenter_trains_with_layer_losses(method, tokenizer, tmp_path):
    """Each view adds its own layer terms; the teacher runs once per input it reads (its features
    for a live-labelled view come from the forward that labels it)."""
    student, teacher = tiny_classifier(layers=1, seed=2), tiny_classifier(layers=2, seed=1)
    if method == "mask-pool":
        augmenter = _pool_augmenter(tokenizer, teacher)
    elif method == "none":
        augmenter = None
    else:
        augmenter = augpro.build_augmenter(method, **({} if method in ("mixkd", "fgsm") else {"degree": 0.3}))
    calls = []
    teacher.register_forward_pre_hook(lambda m, a, k: calls.append(1), with_kwargs=True)
    before = [p.detach().clone() for p in student.parameters()]
    trainer = _trainer(student, teacher, tokenizer, tmp_path, augmenter, hidden_weight=1.0, attention_weight=1.0)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss_hidden" in h]
    assert len(logs) == 2 and all(h["loss_hidden"] > 0 and h["loss_attention"] >= 0 for h in logs)
    # original: one teacher forward (live KD target and layer features); a view: one more, except
    # FGSM (its target is the original's) -- and the pool view, labelled from the cache, needs one
    per_step = {"none": 1, "fgsm": 1}.get(method, 2)
    assert len(calls) == 2 * per_step, method
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    assert not student._forward_hooks and not teacher._forward_hooks  # taps removed after training


def test_projection_when_widths_differ(tokenizer, tmp_path):
    """A learned projection (32 -> 48) trains with the student and is gone from the saved student."""
    from safetensors import safe_open
    from transformers import TrainerCallback

    student, teacher = tiny_classifier(layers=1, seed=2), tiny_classifier(layers=2, seed=1, hidden=48)
    trainer = _trainer(student, teacher, tokenizer, tmp_path, hidden_weight=1.0)
    seen: dict = {}

    class Spy(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            seen.setdefault("first", getattr(student, PROJECTION_ATTR).weight.detach().clone())

        def on_step_end(self, args, state, control, **kwargs):
            weight = getattr(student, PROJECTION_ATTR).weight
            seen["last"] = weight.detach().clone()
            seen["in_optimizer"] = any(weight is p for g in trainer.optimizer.param_groups for p in g["params"])

    trainer.add_callback(Spy())
    trainer.train()
    assert seen["first"].shape == (48, 32) and seen["in_optimizer"]
    assert not torch.equal(seen["first"], seen["last"])  # it learns
    assert getattr(student, PROJECTION_ATTR, None) is None
    student.save_pretrained(tmp_path / "saved")
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        assert not any(PROJECTION_ATTR in k for k in f.keys())


def test_settings_are_checked(tokenizer, tmp_path):
    with pytest.raises(UserError, match="applies to `augpro distill` only"):
        validate(TrainConfig(mode="ft", hidden_weight=1.0))
    with pytest.raises(UserError, match="at least 0"):
        validate(TrainConfig(mode="kd", teacher="t", attention_weight=-1.0))
    with pytest.raises(UserError, match="--shared-forward"):
        validate(TrainConfig(mode="kd", teacher="t", hidden_weight=1.0, shared_forward=True))
    with pytest.raises(UserError, match="need KD mode"):
        _trainer(tiny_classifier(layers=1), None, tokenizer, tmp_path, hidden_weight=1.0)
    with pytest.raises(UserError, match="layer map"):
        _trainer(tiny_classifier(layers=1), tiny_classifier(layers=2), tokenizer, tmp_path, hidden_weight=1.0,
                 layer_map=[5])


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory, tokenizer, sst2):
    root = tmp_path_factory.mktemp("layers-cli")
    tokenizer.save_pretrained(root / "base")
    tiny_classifier(layers=4, seed=3).save_pretrained(root / "base")
    for name, rows in (("train", sst2.train.select(range(32))), ("dev", sst2.dev.select(range(16)))):
        with open(root / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sentence", "label"])
            w.writerows((t[0], y) for t, y in zip(rows.texts, rows.labels))
    return root


def test_distill_with_layer_losses_end_to_end(tiny_folders, tmp_path):
    """``augpro.distill(hidden_weight=..., attention_weight=...)`` on a layer-subset student: the
    layers map to the ones it was copied from, the saved student is a plain checkpoint."""
    data = dict(train_file=str(tiny_folders / "train.csv"), dev_file=str(tiny_folders / "dev.csv"),
                text_columns="sentence", label_column="label", max_steps=2, batch_size=8, progress=False,
                save_checkpoints=False, eval_every_epoch=False)
    augpro.train_teacher(model=str(tiny_folders / "base"), output_dir=str(tmp_path / "teacher"), **data)
    result = augpro.distill(teacher=str(tmp_path / "teacher"), student=str(tiny_folders / "base"), student_layers=2,
                            augment="augpro-mix", degree=0.3, hidden_weight=1.0, attention_weight=0.5,
                            output_dir=str(tmp_path / "kd"), **data)
    assert result["settings"]["hidden_weight"] == 1.0 and result["layers"] == 2
    student = BertForSequenceClassification.from_pretrained(tmp_path / "kd")
    assert student.config.num_hidden_layers == 2
