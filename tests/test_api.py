"""The Python API (docs/api.md): top-level names, augmenters on plain batches, DistillTrainer in a
plain Hugging Face script, the one-call commands. Tiny random models over the real BERT vocabulary."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch

import augpro
from augpro.augment.base import AugmentedBatch, eligible_mask
from augpro.augment.project import special_ids_tensor
from augpro.errors import UserError

from conftest import tiny_classifier
from helpers import make_batch, make_ctx

TOKEN_METHODS = ("augpro-mix", "augpro-fgsm", "knn", "mask", "random")
PAIRS = [("a gorgeous, witty, seductive movie.", "it is good"), ("the worst film of the year, truly bad", "no"),
         ("an intelligent and moving story of love and loss", "yes it is"), ("flat", "lifeless and badly acted")]


@pytest.fixture(scope="module")
def models():
    return tiny_classifier(layers=2, seed=1), tiny_classifier(layers=1, seed=2)


@pytest.fixture(scope="module")
def pair_batch(tokenizer):
    return tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")


# ------------------------------------------------------------------ names
def test_import_is_light_and_names_resolve():
    """``import augpro`` (what the CLI's report/--dry-run paths pay) imports no torch; every name
    resolves; ``augpro.distill`` stays the function after its namesake module is imported."""
    code = ("import sys, augpro, augpro.cli; assert 'torch' not in sys.modules, 'torch imported'; "
            "from augpro.distill import DistillTrainer; import augpro.distill; "
            "assert callable(augpro.distill) and augpro.distill.__module__ == 'augpro.api'; "
            "assert augpro.DistillTrainer is DistillTrainer; "
            "[getattr(augpro, n) for n in augpro.__all__]; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert "augpro-mix" in augpro.METHODS and augpro.build_augmenter("none") is None
    assert isinstance(augpro.build_augmenter("augpro-mix"), augpro.AugProMix)
    with pytest.raises(AttributeError):
        augpro.no_such_name  # noqa: B018


# ------------------------------------------------------------------ augment() on a plain batch
@pytest.mark.parametrize("method", TOKEN_METHODS)
def test_augment_plain_batch_token_methods(method, models, tokenizer, pair_batch):
    teacher, student = models
    aug = augpro.build_augmenter(method, degree=0.3)
    out = aug.augment(pair_batch, teacher=teacher, student=student, tokenizer=tokenizer,
                      generator=torch.Generator().manual_seed(0))
    ids = pair_batch["input_ids"]
    eligible = eligible_mask(ids, pair_batch["attention_mask"], special_ids_tensor(tokenizer))
    assert set(out) == set(pair_batch) and out["input_ids"].shape == ids.shape
    assert out["input_ids"].dtype == torch.long and int(out["input_ids"].max()) < 30522
    assert torch.equal(out["input_ids"][~eligible], ids[~eligible]), "special or padding positions changed"
    assert torch.equal(out["attention_mask"], pair_batch["attention_mask"])
    assert torch.equal(out["token_type_ids"], pair_batch["token_type_ids"])
    expected = torch.tensor([round(0.3 * int(n)) for n in eligible.sum(1)])
    assert torch.equal(out.changed, expected) and torch.equal((out["input_ids"] != ids).sum(1), expected)
    assert torch.equal(out.eligible, eligible.sum(1))
    assert torch.allclose(out.degree, expected / eligible.sum(1))
    assert not torch.isin(out["input_ids"][eligible], special_ids_tensor(tokenizer)).any() or method == "mask"
    assert teacher(**out).logits.shape == (len(PAIRS), 2)  # a batch the models read as is


@pytest.mark.parametrize("method", ["mixkd", "fgsm"])
def test_augment_plain_batch_virtual_methods(method, models, tokenizer, pair_batch):
    teacher, student = models
    out = augpro.build_augmenter(method).augment(pair_batch, teacher=teacher, student=student, tokenizer=tokenizer,
                                                 generator=torch.Generator().manual_seed(0))
    assert "input_ids" not in out and out["inputs_embeds"].shape == (*pair_batch["input_ids"].shape, 32)
    assert student(**out).logits.shape == (len(PAIRS), 2)
    if method == "mixkd":
        assert out.teacher_inputs["inputs_embeds"].shape == out["inputs_embeds"].shape
    else:  # FGSM's target: the teacher on the original batch
        with torch.no_grad():
            assert torch.allclose(out.teacher_logits, teacher(**pair_batch).logits)


@pytest.mark.parametrize("method", ["synonym", "eda"])
def test_augment_plain_batch_word_methods(method, tokenizer, pair_batch):
    aug = augpro.build_augmenter(method, degree=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shortfall warnings on short texts
        out = aug.augment(pair_batch, tokenizer=tokenizer, generator=torch.Generator().manual_seed(1))
    assert out["input_ids"].shape[0] == len(PAIRS) and set(out) == set(pair_batch)
    words = [sum(len(tokenizer.decode(tokenizer(t, add_special_tokens=False)["input_ids"]).split()) for t in pair)
             for pair in PAIRS]
    assert (out.changed > 0).any() and out.eligible.tolist() == words  # words of the decoded pair
    texts = tokenizer.batch_decode(out["input_ids"], skip_special_tokens=True)
    assert texts != tokenizer.batch_decode(pair_batch["input_ids"], skip_special_tokens=True)
    assert all((row == tokenizer.sep_token_id).sum() == 2 for row in out["input_ids"])  # still pairs
    with pytest.raises(ValueError, match="tokenizer="):
        aug.augment(pair_batch)


def test_trainer_form_unchanged(models, tokenizer, sst2):
    """The trainer's call returns what the wrapped method returns, and the convenience form gives
    the same tokens from the same generator."""
    teacher, student = models
    batch = make_batch(sst2.train, tokenizer, n=8)
    ctx = make_ctx(teacher, student, tokenizer)
    aug = augpro.AugProMix(degree=0.3)
    direct = type(aug).augment._augpro_view(aug, batch, ctx, torch.Generator().manual_seed(4), 0)
    via = aug.augment(batch, ctx, torch.Generator().manual_seed(4), 0)
    plain = aug.augment(batch, teacher=teacher, student=student, tokenizer=tokenizer,
                        generator=torch.Generator().manual_seed(4))
    assert isinstance(via, AugmentedBatch)
    assert torch.equal(via.student_inputs["input_ids"], direct.student_inputs["input_ids"])
    assert torch.equal(plain["input_ids"], via.student_inputs["input_ids"])
    assert torch.equal(plain["labels"], batch["labels"])  # other keys pass through


def test_augment_without_tokenizer_keeps_boundary_tokens(models, tokenizer, pair_batch):
    teacher, _ = models
    with pytest.warns(UserWarning, match="no tokenizer"):
        out = augpro.AugProMix(degree=0.5).augment(pair_batch, teacher=teacher,
                                                    generator=torch.Generator().manual_seed(0))
    ids = pair_batch["input_ids"]
    for token in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id):
        assert torch.equal(out["input_ids"] == token, ids == token)


def test_augment_errors(models, tokenizer, pair_batch):
    teacher, student = models
    with pytest.raises(ValueError, match="pass teacher= and/or student="):
        augpro.AugProMix().augment(pair_batch, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="gradient step"):
        augpro.FGSM().augment(pair_batch, student=student, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="rectangular"):
        augpro.TokenReplacement(method="mask").augment({"input_ids": [[101, 2023, 102], [101, 102]]},
                                                       tokenizer=tokenizer)
    # lists that are rectangular are fine, and labels make FT targets for gradient methods
    with pytest.warns(UserWarning, match="no tokenizer"):
        out = augpro.FGSM().augment({"input_ids": [[101, 2023, 2003, 102]], "labels": [1]}, student=student)
    assert out["inputs_embeds"].shape == (1, 4, 32)


# ------------------------------------------------------------------ DistillTrainer in a plain script
def _plain_dataset(tokenizer, n: int = 16):
    rows = [(a, i % 2) for i, (a, _) in enumerate(PAIRS * (n // len(PAIRS)))]
    return [dict(tokenizer(text, truncation=True), label=label, sentence=text) for text, label in rows]


@pytest.mark.parametrize("method", ["augpro-mix", "mask"])
def test_distill_trainer_in_plain_script(method, tokenizer, tmp_path):
    from transformers import TrainingArguments

    teacher, student = tiny_classifier(layers=2, seed=1), tiny_classifier(layers=1, seed=2)
    before = [p.detach().clone() for p in student.parameters()]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, report_to=[],
                             save_strategy="no", dataloader_pin_memory=False, disable_tqdm=True)
    trainer = augpro.DistillTrainer(model=student, teacher=teacher, args=args, train_dataset=_plain_dataset(tokenizer),
                                    eval_dataset=_plain_dataset(tokenizer, 8), processing_class=tokenizer,
                                    augmenter=augpro.build_augmenter(method, degree=0.3), temperature=2.0)
    assert trainer.mode == "kd" and trainer.regression is False and trainer.aug_seed == args.seed
    assert trainer.temperature == 2.0 and isinstance(trainer.data_collator, augpro.PaddingCollator)
    trainer.train()
    summary = trainer.augmentation_summary()
    # round(0.3 * n) per row: short rows change fewer than 30% (a one-token row none)
    assert 0.15 < summary["realised_degree"] <= 0.35 and 0 <= summary["label_flip_rate"] <= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))
    assert "eval_runtime" in trainer.evaluate()
    assert not any(p.requires_grad for p in teacher.parameters())


def test_distill_trainer_derives_vocabulary_from_saved_models(tokenizer, tmp_path):
    """No processing_class: the tokenizer saved beside a from_pretrained model gives the special ids."""
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    tiny_classifier(layers=1, seed=3).save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=1, report_to=[], save_strategy="no",
                             disable_tqdm=True, dataloader_pin_memory=False)
    trainer = augpro.DistillTrainer(model=student, args=args, train_dataset=_plain_dataset(tokenizer),
                                    augmenter=augpro.AugProMix(degree=0.3))
    assert trainer.mode == "ft"
    assert torch.equal(trainer.special_ids, special_ids_tensor(tokenizer))
    assert not trainer.allowed[tokenizer.convert_tokens_to_ids("[unused5]")]


# ------------------------------------------------------------------ one call per command
def test_one_call_settings_are_checked():
    with pytest.raises(UserError, match=r"unknown setting 'lerning_rate' \(did you mean learning_rate\?\)"):
        augpro.distill(teacher="t", lerning_rate=1e-4)
    with pytest.raises(UserError, match="progress=False"):
        augpro.finetune(quiet=True)
    with pytest.raises(UserError, match="sets mode itself"):
        augpro.train_teacher(mode="kd")
    with pytest.raises(UserError, match="epochs must be a number"):
        augpro.finetune(epochs="3")
    with pytest.raises(UserError, match="needs --teacher"):
        augpro.distill(output_dir="x")
    from augpro.api import config_from_settings

    cfg = config_from_settings("kd", "distill", {"student_layers": [0, 5], "degree": 0.3, "train-size": 100})
    assert (cfg.mode, cfg.student_layers, cfg.degree, cfg.train_size) == ("kd", "0,5", 0.3, 100)
