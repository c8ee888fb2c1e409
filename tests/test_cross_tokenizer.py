"""Teacher and student with different tokenizers: augment in the teacher's vocabulary, decode,
re-tokenize for the student. The teacher is MiniLM (uncased BERT WordPiece); the student is a
small random BERT over a *cased* WordPiece vocabulary trained here, offline, on real GLUE rows."""

from __future__ import annotations

import json

import pytest
import torch

from augpro.augment import build_augmenter
from augpro.augment.base import PrepareContext
from augpro.config import TrainConfig
from augpro.data import Split, encode, pad_batch
from augpro.errors import UserError
from augpro.models import load_tokenizer, same_tokenizer
from augpro.retokenize import Retokenizer
from augpro.runner import run_training

from conftest import tiny_classifier
from helpers import make_ctx

QUICK = dict(progress=False, save_checkpoints=False, eval_every_epoch=False, eval_batch_size=256, max_length=64,
             dev_size=64)


def _student_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=False)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tk.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=4000, special_tokens=specials))
    cls, sep = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tk.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=512, do_lower_case=False)


@pytest.fixture(scope="module")
def cased_student(tmp_path_factory, sst2, rte):
    """A folder with a cased 4,000-token WordPiece tokenizer and a random 2-layer BERT over it."""
    from transformers import BertConfig, BertForSequenceClassification

    texts = [t for row in sst2.train.texts[:3000] for t in row] + [t for row in rte.train.texts[:1500] for t in row]
    tok = _student_tokenizer(texts)
    out = tmp_path_factory.mktemp("cased_student")
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128, max_position_embeddings=512, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, data_dir):
    """MiniLM-L6 fine-tuned for a few steps on real SST-2 rows."""
    out = tmp_path_factory.mktemp("xt_teacher") / "sst2"
    run_training(TrainConfig(mode="teacher", task="sst2", data_dir=data_dir, train_size=128, max_steps=4,
                             batch_size=32, output_dir=str(out), **QUICK))
    return out


def test_student_tokenizer_really_differs(cased_student, tokenizer):
    student_tok = load_tokenizer(str(cased_student))
    assert not same_tokenizer(student_tok, tokenizer)
    assert student_tok("The Movie")["input_ids"] != tokenizer("The Movie")["input_ids"]


@pytest.mark.parametrize("use_types", [True, False])
def test_retokenizer_round_trip_keeps_both_segments(rte, tokenizer, cased_student, use_types):
    """Teacher tokens of real RTE pairs -> text -> teacher tokens again: the same ids for almost
    every row (decoding is lossy only for text the uncased tokenizer normalises away), and the
    split into two segments works from token types and from the separator alone."""
    student_tok = load_tokenizer(str(cased_student))
    rt = Retokenizer(tokenizer, student_tok, max_length=128, segments=2)
    rows = rte.train.texts[:200]
    enc = tokenizer([a for a, _ in rows], [b for _, b in rows], truncation=True, max_length=128)
    texts = rt.texts(enc["input_ids"], enc["token_type_ids"] if use_types else None)
    assert all(len(t) == 2 and t[0] and t[1] for t in texts)
    again = tokenizer([a for a, _ in texts], [b for _, b in texts], truncation=True, max_length=128)
    same = sum(x == y for x, y in zip(again["input_ids"], enc["input_ids"]))
    assert same >= 0.95 * len(rows), same
    student = rt.encode(texts)
    assert all(1 in types for types in student["token_type_ids"])  # a pair for the student too


def test_augpro_mix_across_tokenizers_feeds_the_student_the_decoded_text(sst2, tokenizer, cased_student):
    """AugPro-Mix mixes and projects the teacher's tokens; the student's inputs are exactly the
    re-tokenized decoding of those tokens."""
    student_tok = load_tokenizer(str(cased_student))
    rt = Retokenizer(tokenizer, student_tok, max_length=64, segments=1)
    split = Split(sst2.train.texts[:16], sst2.train.labels[:16])
    s_ds = encode(split, student_tok, 64)
    t_ds = encode(split, tokenizer, 64)
    s_ds.add_encodings("teacher_", t_ds.encodings)
    batch = pad_batch([s_ds[i] for i in range(16)], student_tok.pad_token_id, teacher_pad_token_id=0)
    teacher = tiny_classifier(seed=1)
    ctx = make_ctx(teacher, tiny_classifier(seed=2), tokenizer)
    ctx.teacher_batch = {k: batch["teacher_" + k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    ctx.retokenize = rt
    out = build_augmenter("augpro-mix", degree=0.3).augment(batch, ctx, torch.Generator().manual_seed(0))
    t_ids = out.teacher_inputs["input_ids"]
    assert t_ids.shape == ctx.teacher_batch["input_ids"].shape
    expected_changed = torch.round(0.3 * out.eligible.double()).long()
    assert torch.equal(out.changed, expected_changed)
    lengths = ctx.teacher_batch["attention_mask"].sum(1).tolist()
    rows = [r[:n] for r, n in zip(t_ids.tolist(), lengths)]
    expected = rt.encode(rt.texts(rows))["input_ids"]
    got = out.student_inputs["input_ids"]
    for i, ids in enumerate(expected):
        assert got[i, :len(ids)].tolist() == ids
        assert (got[i, len(ids):] == student_tok.pad_token_id).all()
    assert out.student_inputs["input_ids"].max() < len(student_tok)


@pytest.mark.slow
@pytest.mark.parametrize("method,degree", [("augpro-mix", 0.3), ("knn", 0.3), ("synonym", 0.2), ("none", None)])
def test_kd_across_tokenizers_end_to_end(method, degree, teacher_dir, cased_student, data_dir, tmp_path):
    """`augpro distill` with a MiniLM teacher and a student over another vocabulary."""
    from transformers import pipeline

    out = tmp_path / method
    result = run_training(TrainConfig(mode="kd", task="sst2", data_dir=data_dir, train_size=64,
                                      teacher=str(teacher_dir), student=str(cased_student), student_layers="2",
                                      max_steps=3, batch_size=16, augment=method, degree=degree, copies=2,
                                      output_dir=str(out), **QUICK))
    assert result["cross_tokenizer"] is True and result["steps"] == 3
    aug = result["augmentation"]
    if method != "none":
        assert 0.0 <= aug["label_flip_rate"] <= 1.0
        assert aug["realised_degree"] == pytest.approx(degree, abs=0.06)
    # the saved student carries its own tokenizer and loads in a plain pipeline
    assert json.loads((out / "metrics.json").read_text())["cross_tokenizer"] is True
    assert not same_tokenizer(load_tokenizer(str(out)), load_tokenizer(str(teacher_dir)))
    pred = pipeline("text-classification", model=str(out), device=-1)("A Gorgeous, Witty Movie.")
    assert pred[0]["label"] in {"negative", "positive"}


@pytest.mark.parametrize("method,extra", [("mixkd", {}), ("fgsm", {}), ("augpro-fgsm", {}),
                                          ("augpro-mix", {"projection_table": "student"})])
def test_methods_that_need_a_shared_tokenizer_are_refused(method, extra, teacher_dir, cased_student, data_dir,
                                                          tmp_path):
    with pytest.raises(UserError, match="tokenizer"):
        run_training(TrainConfig(mode="kd", task="sst2", data_dir=data_dir, train_size=32,
                                 teacher=str(teacher_dir), student=str(cased_student), max_steps=1,
                                 augment=method, output_dir=str(tmp_path / "x"), **{**QUICK, **extra}))
    assert not (tmp_path / "x").exists()


def test_pool_across_tokenizers_labels_teacher_tokens(sst2, tokenizer, cased_student, minilm_table):
    """A knn pool is built and labelled in the teacher's tokens; the student reads its re-tokenized
    copy; with live labelling the teacher gets the teacher-token rows."""
    student_tok = load_tokenizer(str(cased_student))
    rt = Retokenizer(tokenizer, student_tok, max_length=64, segments=1)
    split = Split(sst2.train.texts[:24], sst2.train.labels[:24])
    t_enc = encode(split, tokenizer, 64).encodings
    seen: list[list[list[int]]] = []

    def label_pool(enc):
        seen.append(enc["input_ids"])
        return torch.zeros(len(enc["input_ids"]), 2)

    aug = build_augmenter("knn", degree=0.3, embedding_table=minilm_table)
    aug.prepare(PrepareContext(texts=split.texts, input_ids=t_enc["input_ids"], token_type_ids=t_enc["token_type_ids"],
                               tokenizer=tokenizer, max_length=64, copies=2, generator=torch.Generator().manual_seed(0),
                               label_pool=label_pool, show_progress=False, retokenize=rt))
    assert len(seen) == 2 and all(max(max(r) for r in rows) < 30522 for rows in seen)
    for copy, view in enumerate(aug.pool):
        assert view.input_ids == rt.encode(rt.texts(seen[copy]))["input_ids"]
        assert view.teacher_logits is not None
    # live labelling (no label_pool): teacher inputs are the teacher-token rows of the view
    aug.prepare(PrepareContext(texts=split.texts, input_ids=t_enc["input_ids"], token_type_ids=t_enc["token_type_ids"],
                               tokenizer=tokenizer, max_length=64, copies=1, generator=torch.Generator().manual_seed(0),
                               show_progress=False, retokenize=rt))
    batch = {"idx": torch.tensor([3, 1]), "input_ids": torch.zeros(2, 4, dtype=torch.long)}
    out = aug.augment(batch, None, torch.Generator())
    assert out.teacher_logits is None
    assert out.teacher_inputs["input_ids"][0, :len(seen[0][3])].tolist() == seen[0][3]
    assert out.student_inputs["input_ids"][1, :len(aug.pool[0].input_ids[1])].tolist() == aug.pool[0].input_ids[1]
