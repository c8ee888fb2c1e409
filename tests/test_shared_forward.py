"""The shared student forward (``shared_forward``) and bf16 teacher inference (``bf16_teacher``).

* Without dropout, a step with one joint forward (AugPro-Mix, token methods) or with the FGSM
  gradient taken from the original forward (AugPro-FGSM, FGSM) has the same loss, the same
  gradients and the same augmentation statistics as the default step's separate forwards.
* With dropout the default step is exactly what it was before ``shared_forward`` existed (a
  reference copy of the old ``compute_loss`` below, bit for bit, same RNG draws).
* bf16 teacher logits are cached apart from fp32 ones, and bf16 autocast is really engaged.
* A killed and resumed run with ``--shared-forward --bf16 --bf16-teacher`` ends with the same
  weights as an uninterrupted one (slow).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from augpro.augment import AugProFGSM, AugProMix, FGSM, TokenReplacement
from augpro.augment.base import AugmentedBatch, Augmenter, PrepareContext
from augpro.augment.project import allowed_vocab_mask, special_ids_tensor
from augpro.data import Collator, encode
from augpro.distill import DistillTrainer, model_inputs, same_rows, split_outputs, stack_inputs, take_rows
from augpro.losses import kd_loss, label_loss
from helpers import kill_and_resume


def _bert(layers: int, seed: int, dropout: float):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, num_labels=2, max_position_embeddings=128,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForSequenceClassification(cfg)


class _Longer(Augmenter):
    """A test augmenter whose views are longer than the batch (as re-tokenized text can be): each
    row gets two extra real tokens before its padding, so joint forwards must pad the original."""

    name = "longer"

    def augment(self, batch, ctx, generator, copy=0):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        B, L = ids.shape
        new = torch.zeros(B, L + 2, dtype=ids.dtype)
        new_mask = torch.zeros(B, L + 2, dtype=mask.dtype)
        extra = torch.randint(1000, 2000, (B, 2), generator=generator)
        for b in range(B):
            n = int(mask[b].sum())
            new[b, : n - 1] = ids[b, : n - 1]
            new[b, n - 1: n + 1] = extra[b]
            new[b, n + 1] = ids[b, n - 1]  # [SEP] last
            new_mask[b, : n + 2] = 1
        inputs = {"input_ids": new, "attention_mask": new_mask, "token_type_ids": torch.zeros_like(new)}
        return AugmentedBatch(student_inputs=inputs, teacher_inputs=inputs, changed=torch.full((B,), 2),
                              eligible=mask.sum(1))


@pytest.fixture(scope="module")
def rows(sst2, tokenizer):
    return encode(sst2.train.select(range(24)), tokenizer, 48)


def _batch(rows, tokenizer, start=0, n=8, logits=None):
    batch = Collator(tokenizer.pad_token_id, False)([rows[i] for i in range(start, start + n)])
    if logits is not None:
        batch["teacher_logits"] = logits[start:start + n]
    return batch


def _augmenter(name, rows, tokenizer, teacher):
    if name == "augpro-mix":
        return AugProMix(degree=0.3)
    if name == "augpro-mix-plain":  # plain projection: about half the rows come back unchanged
        return AugProMix()
    if name == "augpro-mix-student-table":
        return AugProMix(projection_table="student")
    if name == "augpro-fgsm":
        return AugProFGSM(degree=0.3)
    if name == "fgsm":
        return FGSM(eps=0.5)
    if name == "longer":
        return _Longer()
    aug = TokenReplacement("knn", degree=0.3, embedding_table=teacher.get_input_embeddings().weight.detach())
    aug.prepare(PrepareContext(texts=None, input_ids=rows.encodings["input_ids"],
                               token_type_ids=rows.encodings.get("token_type_ids"), tokenizer=tokenizer,
                               max_length=48, copies=2, generator=torch.Generator().manual_seed(0),
                               show_progress=False))
    return aug


def _trainer(student, teacher, augmenter, tokenizer, tmp_path, mode="kd", **kwargs):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=8, report_to=[], use_cpu=True,
                             disable_tqdm=True, remove_unused_columns=False, label_names=["labels"],
                             save_strategy="no", logging_strategy="no", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DistillTrainer(model=student, args=args, data_collator=Collator(tokenizer.pad_token_id, False),
                              mode=mode, teacher=teacher if mode == "kd" else None, augmenter=augmenter,
                              special_ids=special_ids_tensor(tokenizer), allowed=allowed_vocab_mask(tokenizer, 30522),
                              aug_seed=3, **kwargs)


def _loss_and_grads(trainer, student, batch):
    student.zero_grad(set_to_none=True)
    trainer._window.clear()
    trainer.totals.clear()
    loss = trainer.compute_loss(student, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
    stats = {k: list(v) for k, v in trainer._window.items()}
    return float(loss.detach()), grads, stats, dict(trainer.totals)


CASES = [  # (augmenter, mode, copies, ce_weight, cached teacher logits)
    ("augpro-mix", "kd", 1, 0.0, True),
    ("augpro-mix-plain", "kd", 2, 0.0, True),
    ("augpro-mix-plain", "kd", 1, 0.5, False),
    ("augpro-mix-plain", "ft", 2, 0.0, False),
    ("augpro-mix", "kd", 2, 0.5, False),
    ("augpro-mix", "ft", 1, 0.0, False),
    ("augpro-mix-student-table", "kd", 1, 0.0, True),
    ("knn", "kd", 2, 0.0, True),
    ("longer", "kd", 2, 0.0, True),
    ("augpro-fgsm", "kd", 1, 0.0, True),
    ("augpro-fgsm", "kd", 2, 0.5, False),
    ("augpro-fgsm", "ft", 1, 0.0, False),
    ("fgsm", "kd", 1, 0.0, True),
]


@pytest.mark.parametrize("name,mode,copies,ce_weight,cached", CASES,
                         ids=[f"{c[0]}-{c[1]}-x{c[2]}{'-ce' if c[3] else ''}{'-cached' if c[4] else ''}" for c in CASES])
def test_shared_forward_equals_separate_forwards_without_dropout(name, mode, copies, ce_weight, cached, rows,
                                                                  tokenizer, tmp_path):
    teacher = _bert(2, 1, 0.0).eval()
    logits = None
    if cached:
        from augpro.runner import predict_logits

        logits = predict_logits(teacher, rows.encodings, 16, tokenizer.pad_token_id)
    results = {}
    for shared in (False, True):
        student = _bert(1, 2, 0.0).train()
        aug = _augmenter(name, rows, tokenizer, teacher)
        trainer = _trainer(student, teacher, aug, tokenizer, tmp_path / str(shared), mode=mode, copies=copies,
                           ce_weight=ce_weight, shared_forward=shared)
        trainer.state.global_step = 5
        expected_path = "separate" if not shared else ("input-gradient" if "fgsm" in name else "joint")
        assert trainer._step_path(student) == expected_path
        results[shared] = [_loss_and_grads(trainer, student, _batch(rows, tokenizer, start, logits=logits))
                           for start in (0, 8)]
    for (loss_a, grads_a, stats_a, totals_a), (loss_b, grads_b, stats_b, totals_b) in zip(results[False],
                                                                                          results[True]):
        assert loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-6)
        assert grads_a.keys() == grads_b.keys() and grads_a
        for k in grads_a:
            torch.testing.assert_close(grads_b[k], grads_a[k], rtol=1e-4, atol=1e-6, msg=k)
        assert totals_b == pytest.approx(totals_a)  # the same views: same changed/eligible counts
        assert stats_b.keys() == stats_a.keys()
        for k in stats_a:
            assert stats_b[k] == pytest.approx(stats_a[k], rel=1e-5, abs=1e-6), k


def _reference_loss(self, model, inputs):
    """``DistillTrainer.compute_loss`` as it was before ``shared_forward`` (commit d80b43c)."""
    from augpro.augment.base import AugmentContext, teacher_view

    labels = inputs["labels"]
    s = model(**model_inputs(inputs)).logits
    t = None
    if self.mode == "kd":
        t = self._teacher_logits(inputs)
        loss = self.kd_weight * kd_loss(t, s, self.temperature, self.regression)
        if self.ce_weight:
            loss = loss + self.ce_weight * label_loss(s, labels, self.regression)
    else:
        loss = label_loss(s, labels, self.regression)
    ctx = AugmentContext(student=model, teacher=self.teacher, mode="kd" if self.mode == "kd" else "ft",
                         temperature=self.temperature, regression=self.regression,
                         teacher_logits=(lambda _b, _t=t: _t), special_ids=self.special_ids, allowed=self.allowed,
                         teacher_batch=teacher_view(inputs), retokenize=self.retokenize)
    for copy in range(self.copies):
        aug = self.augmenter.augment(inputs, ctx, self._generator(copy), copy)
        s_aug = model(**aug.student_inputs).logits
        if self.mode == "kd":
            if aug.teacher_logits is not None:
                t_aug = aug.teacher_logits.float()
            else:
                with torch.no_grad():
                    t_aug = self.teacher(**aug.teacher_inputs).logits.float()
            aug_loss = kd_loss(t_aug, s_aug, self.temperature, self.regression)
        else:
            target = aug.soft_labels if aug.soft_labels is not None else labels
            aug_loss = label_loss(s_aug, target, self.regression)
        loss = loss + self.aug_weight * aug_loss / self.copies
    return loss


@pytest.mark.parametrize("name", ["augpro-mix", "augpro-fgsm", "knn"])
def test_default_step_is_unchanged_with_dropout(name, rows, tokenizer, tmp_path):
    """The default path draws the same dropout masks in the same order as before: bit-identical."""
    teacher = _bert(2, 1, 0.1).eval()
    out = []
    for reference in (True, False):
        student = _bert(1, 2, 0.1).train()
        trainer = _trainer(student, teacher, _augmenter(name, rows, tokenizer, teacher), tokenizer, tmp_path,
                           copies=2, ce_weight=0.5)
        batch = _batch(rows, tokenizer)
        torch.manual_seed(11)
        loss = _reference_loss(trainer, student, batch) if reference else trainer.compute_loss(student, batch)
        loss.backward()
        out.append((loss.detach(), [p.grad.clone() for p in student.parameters() if p.grad is not None],
                    torch.rand(1)))  # and the global RNG left in the same state
    assert torch.equal(out[0][0], out[1][0])
    assert all(torch.equal(a, b) for a, b in zip(out[0][1], out[1][1]))
    assert torch.equal(out[0][2], out[1][2])


def test_shared_forward_with_dropout_is_another_valid_draw(rows, tokenizer, tmp_path):
    """With dropout the joint forward draws other masks: a different, finite loss (not the same run)."""
    teacher = _bert(2, 1, 0.1).eval()
    losses = []
    for shared in (False, True):
        student = _bert(1, 2, 0.1).train()
        trainer = _trainer(student, teacher, AugProMix(degree=0.3), tokenizer, tmp_path, shared_forward=shared)
        torch.manual_seed(11)
        losses.append(float(trainer.compute_loss(student, _batch(rows, tokenizer))))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[0] != losses[1]


def test_stack_inputs_pads_and_split_outputs_cuts():
    a = {"input_ids": torch.tensor([[101, 5, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    b = {"input_ids": torch.tensor([[101, 6, 7, 8, 102], [101, 9, 102, 0, 0]]),
         "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}
    stacked = stack_inputs([a, b], pad_token_id=0)
    assert stacked["input_ids"].tolist() == [[101, 5, 102, 0, 0], [101, 6, 7, 8, 102], [101, 9, 102, 0, 0]]
    assert stacked["attention_mask"][0].tolist() == [1, 1, 1, 0, 0]
    assert stack_inputs([a, {"inputs_embeds": torch.zeros(1, 3, 4), "attention_mask": a["attention_mask"]}]) is None
    assert stack_inputs([a, {**b, "token_type_ids": torch.zeros_like(b["input_ids"])}]) is None

    from transformers.modeling_outputs import SequenceClassifierOutput

    hidden = torch.arange(3 * 5 * 2, dtype=torch.float).view(3, 5, 2)
    out = SequenceClassifierOutput(logits=torch.arange(6.0).view(3, 2), hidden_states=(hidden, hidden + 1))
    first, second = split_outputs(out, [1, 2], [3, 5])
    assert first.logits.tolist() == [[0.0, 1.0]] and second.logits.shape == (2, 2)
    assert first.hidden_states[1].shape == (1, 3, 2) and torch.equal(first.hidden_states[0], hidden[:1, :3])
    assert torch.equal(second.hidden_states[0], hidden[1:])


def test_same_rows_and_take_rows():
    a = {"input_ids": torch.tensor([[101, 5, 102, 0], [101, 6, 7, 102]]), "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])}
    b = {"input_ids": torch.tensor([[101, 5, 102], [101, 6, 8]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 1]])}
    assert same_rows(a, b).tolist() == [True, False]  # compared after padding to one length
    assert same_rows(a, {"inputs_embeds": torch.zeros(2, 4, 3), "attention_mask": a["attention_mask"]}).tolist() == [False, False]
    part = take_rows(a, torch.tensor([True, False]))
    assert part["input_ids"].tolist() == [[101, 5, 102]] and part["attention_mask"].tolist() == [[1, 1, 1]]


def test_shared_forward_runs_the_teacher_and_student_on_changed_rows_only(rows, tokenizer, tmp_path):
    teacher = _bert(2, 1, 0.0).eval()
    seen = {"teacher": 0, "student": 0}
    teacher.register_forward_pre_hook(lambda m, a, kw: seen.__setitem__("teacher", seen["teacher"] + kw["input_ids"].shape[0]),
                                      with_kwargs=True)
    counts = {}
    for shared in (False, True):
        student = _bert(1, 2, 0.0).train()
        student.register_forward_pre_hook(
            lambda m, a, kw: seen.__setitem__("student", seen["student"] + kw["input_ids"].shape[0]), with_kwargs=True)
        trainer = _trainer(student, teacher, AugProMix(), tokenizer, tmp_path, shared_forward=shared)
        batch = _batch(rows, tokenizer, 0, 16)
        batch["teacher_logits"] = torch.zeros(16, 2)
        seen.update(teacher=0, student=0)
        aug = trainer.augmenter.augment(batch, trainer._augment_context(student, batch, batch["teacher_logits"]),
                                        trainer._generator(0), 0)
        changed = int((~same_rows(aug.student_inputs, model_inputs(batch))).sum())
        seen.update(teacher=0, student=0)
        trainer.compute_loss(student, batch)
        counts[shared] = dict(seen)
    assert 0 < changed < 16  # the plain projection left some rows unchanged
    assert counts[False] == {"teacher": 16, "student": 32}
    assert counts[True] == {"teacher": changed, "student": 16 + changed}


def test_joint_forward_matches_separate_forwards_of_a_padded_model(rows, tokenizer):
    """Padding a row to a longer joint batch does not change its logits (attention masks padding)."""
    model = _bert(2, 4, 0.0).eval()
    short, long_ = _batch(rows, tokenizer, 0, 4), _Longer().augment(_batch(rows, tokenizer, 4, 4), None,
                                                                   torch.Generator().manual_seed(0))
    parts = [model_inputs(short), long_.student_inputs]
    with torch.no_grad():
        joint = split_outputs(model(**stack_inputs(parts)), [4, 4], [p["input_ids"].shape[1] for p in parts])
        for part, out in zip(parts, joint):
            torch.testing.assert_close(out.logits, model(**part).logits, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------- bf16
def test_bf16_teacher_logits_are_bf16_and_cached_apart(rows, tokenizer, tmp_path, monkeypatch):
    import augpro.runner as runner
    from augpro.config import TrainConfig

    teacher = _bert(2, 1, 0.0).eval()
    fp32 = runner.predict_logits(teacher, rows.encodings, 128, tokenizer.pad_token_id)  # cfg.eval_batch_size
    bf16 = runner.predict_logits(teacher, rows.encodings, 128, tokenizer.pad_token_id, bf16=True)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # autocast was engaged
    torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05)

    monkeypatch.setenv("AUGPRO_CACHE", str(tmp_path / "cache"))
    calls = []
    real = runner.predict_logits

    def counting(*args, **kwargs):
        calls.append(kwargs.get("bf16", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "predict_logits", counting)
    got = {}
    for flag in (False, True, False, True):
        cfg = TrainConfig(bf16_teacher=flag, progress=False)
        got.setdefault(flag, []).append(runner.teacher_logits_cached(teacher, "t", rows.encodings, cfg,
                                                                     tokenizer.pad_token_id))
    assert calls == [False, True]  # one computation per kind, then the cache
    assert torch.equal(got[False][0], got[False][1]) and torch.equal(got[False][0], fp32)
    assert torch.equal(got[True][0], bf16)


def test_bf16_teacher_in_the_trainer(rows, tokenizer, tmp_path):
    teacher = _bert(2, 1, 0.0).eval()
    batch = _batch(rows, tokenizer)
    out = {}
    for flag in (False, True):
        trainer = _trainer(_bert(1, 2, 0.0), teacher, None, tokenizer, tmp_path, bf16_teacher=flag)
        out[flag] = trainer._teacher_logits(batch)
    assert out[True].dtype == torch.float32 and not torch.equal(out[True], out[False])
    torch.testing.assert_close(out[True], out[False], rtol=0.05, atol=0.05)


# ------------------------------------------------------------------------------------- resume
@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_with_shared_forward_and_bf16(tmp_path, data_dir):
    a, b = kill_and_resume(tmp_path, data_dir, extra=("--shared-forward", "--bf16", "--bf16-teacher"))
    assert a["settings"]["shared_forward"] and a["settings"]["bf16"] and a["settings"]["bf16_teacher"]
    assert b["steps"] == a["steps"] == 18
    assert b["dev"] == a["dev"]
    assert b["replica_weight_sha256"] == a["replica_weight_sha256"]
