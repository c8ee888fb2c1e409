"""Augmenter mechanics on real tokenizer, real GLUE rows and the real MiniLM embedding table."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augpro.augment import build_augmenter
from augpro.augment.base import PrepareContext, eligible_mask, pick_exact
from augpro.augment.interpolate import draw_mix_plan, segment_alignment
from augpro.augment.project import Projector, allowed_vocab_mask, special_ids_tensor
from augpro.augment.replace import cached_knn_table, replace_tokens
from augpro.data import Split, encode, pad_batch

from conftest import tiny_classifier
from helpers import make_batch, make_ctx

DEGREES = (0.0, 0.1, 0.3, 0.5, 0.9)


# ------------------------------------------------------------------ projection
@pytest.mark.slow
def test_projection_identity_whole_vocabulary(minilm_table, tokenizer):
    """P(E[x]) == x for every allowed token of the real MiniLM table (L2)."""
    allowed = allowed_vocab_mask(tokenizer, minilm_table.shape[0])
    proj = Projector(minilm_table, allowed, chunk_size=1024)
    ids = allowed.nonzero().squeeze(1)
    got = proj.project(minilm_table[ids])
    mismatches = (got != ids).sum().item()
    assert mismatches == 0, f"{mismatches} tokens do not project to themselves"


def test_projection_excludes_and_never_returns_special(minilm_table, tokenizer):
    allowed = allowed_vocab_mask(tokenizer, minilm_table.shape[0])
    proj = Projector(minilm_table, allowed, chunk_size=7)  # odd chunk size exercises chunk edges
    ids = torch.tensor(tokenizer.convert_tokens_to_ids(["good", "movie", "bad", "film", "the"]))
    assert torch.equal(proj.project(minilm_table[ids]), ids)
    other = proj.project(minilm_table[ids], exclude=ids)
    assert not torch.any(other == ids)
    assert allowed[other].all()
    # special tokens' own embeddings never project to a special token
    special = special_ids_tensor(tokenizer)
    assert allowed[proj.project(minilm_table[special])].all()


def test_projection_matches_cdist_bruteforce(minilm_table, tokenizer):
    allowed = allowed_vocab_mask(tokenizer, minilm_table.shape[0])
    proj = Projector(minilm_table, allowed, chunk_size=64)
    g = torch.Generator().manual_seed(0)
    a = torch.randint(1000, 30000, (200,), generator=g)
    b = torch.randint(1000, 30000, (200,), generator=g)
    lam = torch.rand(200, 1, generator=g)
    emb = lam * minilm_table[a] + (1 - lam) * minilm_table[b]
    d = torch.cdist(emb.double(), minilm_table.double())
    d[:, ~allowed] = float("inf")
    assert torch.equal(proj.project(emb), d.argmin(1))


# ------------------------------------------------------------------ degree exactness
@pytest.fixture(scope="module")
def knn(minilm_table, tokenizer):
    return cached_knn_table(minilm_table, allowed_vocab_mask(tokenizer, 30522), k=16)


@pytest.mark.parametrize("method", ["knn", "mask", "random"])
@pytest.mark.parametrize("task", ["sst2", "rte"])
def test_replacement_degree_exact(method, task, request, tokenizer, knn):
    data = request.getfixturevalue(task)
    batch = make_batch(data.train, tokenizer, n=200)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    eligible = eligible_mask(ids, mask, special_ids_tensor(tokenizer))
    allowed = allowed_vocab_mask(tokenizer, 30522)
    for degree in DEGREES:
        new, sel = replace_tokens(ids, eligible, degree, method, torch.Generator().manual_seed(1), allowed=allowed,
                                  neighbours=knn, mask_token_id=tokenizer.mask_token_id)
        changed = (new != ids).sum(1)
        expected = torch.tensor([round(degree * int(n)) for n in eligible.sum(1)])
        assert torch.equal(changed, expected), (method, degree)
        assert torch.equal(sel, new != ids)
        assert not torch.any(sel & ~eligible)  # specials and padding untouched
        if method == "mask":
            assert (new[sel] == tokenizer.mask_token_id).all()
        else:
            assert allowed[new[sel]].all()


@pytest.mark.parametrize("method", ["knn", "mask", "random"])
def test_pooled_view_matches_padded_reference(method, tokenizer, rte, knn, minilm_table):
    """The ragged pool (flat ids + lengths, chunks of 7 rows) holds exactly what replace_tokens
    gives on each padded chunk, and gathering a batch from it restores padded rows and token types."""
    from augpro.augment.pool import PoolView
    from augpro.augment.replace import TokenReplacement

    ds = encode(Split(rte.train.texts[:40], rte.train.labels[:40]), tokenizer, max_length=96)
    ids_rows, tt_rows = ds.encodings["input_ids"], ds.encodings["token_type_ids"]
    aug = TokenReplacement(method, degree=0.3, embedding_table=minilm_table, batch_size=7)
    view = aug.build_view(PrepareContext(texts=rte.train.texts[:40], input_ids=ids_rows, token_type_ids=tt_rows,
                                         tokenizer=tokenizer, max_length=96, copies=1,
                                         generator=torch.Generator().manual_seed(5), show_progress=False), 0)
    gen = torch.Generator().manual_seed(5)
    special, allowed = special_ids_tensor(tokenizer), allowed_vocab_mask(tokenizer, 30522)
    expected_rows, expected_changed = [], []
    for start in range(0, 40, 7):
        chunk = ids_rows[start:start + 7]
        width = max(map(len, chunk))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in chunk])
        mask = torch.arange(width)[None] < torch.tensor([len(r) for r in chunk])[:, None]
        new, sel = replace_tokens(ids, eligible_mask(ids, mask, special), 0.3, method, gen, allowed=allowed,
                                  neighbours=knn, mask_token_id=tokenizer.mask_token_id)
        expected_rows += [new[i, :len(r)].tolist() for i, r in enumerate(chunk)]
        expected_changed += sel.sum(1).tolist()
    assert view.input_ids == expected_rows
    assert view.token_type_ids == tt_rows
    assert view.changed.tolist() == expected_changed
    assert view.eligible.tolist() == [sum(t not in special.tolist() for t in r) for r in ids_rows]
    idx = torch.tensor([5, 0, 39, 12])
    got = view.gather(idx, pad=tokenizer.pad_token_id)
    width = max(len(ids_rows[i]) for i in idx.tolist())
    for j, i in enumerate(idx.tolist()):
        n = len(ids_rows[i])
        assert got["input_ids"][j, :n].tolist() == expected_rows[i]
        assert (got["input_ids"][j, n:] == tokenizer.pad_token_id).all()
        assert got["attention_mask"][j].tolist() == [1] * n + [0] * (width - n)
        assert got["token_type_ids"][j, :n].tolist() == tt_rows[i]
    round_trip = PoolView.from_lists(view.input_ids, view.token_type_ids, view.changed, view.eligible)
    assert torch.equal(round_trip.ids, view.ids) and torch.equal(round_trip.type_ids, view.type_ids)


@pytest.mark.parametrize("method", ["augpro-mix", "augpro-fgsm"])
@pytest.mark.parametrize("task", ["sst2", "rte"])
def test_augpro_degree_exact(method, task, request, tokenizer):
    data = request.getfixturevalue(task)
    teacher, student = tiny_classifier(seed=1), tiny_classifier(layers=1, seed=2)
    batch = make_batch(data.train, tokenizer, n=48)
    ctx = make_ctx(teacher, student, tokenizer)
    eligible = eligible_mask(batch["input_ids"], batch["attention_mask"], ctx.special_ids)
    for degree in DEGREES:
        aug = build_augmenter(method, degree=degree)
        out = aug.augment(batch, ctx, torch.Generator().manual_seed(3))
        new = out.student_inputs["input_ids"]
        expected = torch.tensor([round(degree * int(n)) for n in eligible.sum(1)])
        assert torch.equal((new != batch["input_ids"]).sum(1), expected), (method, degree)
        assert torch.equal(out.changed, expected)
        _assert_structure_kept(batch, out.student_inputs, eligible)


def _assert_structure_kept(batch, inputs, eligible):
    ids = batch["input_ids"]
    new = inputs["input_ids"]
    assert new.shape == ids.shape
    assert torch.equal(new[~eligible], ids[~eligible]), "special/padding positions changed"
    assert torch.equal(inputs["attention_mask"], batch["attention_mask"])
    if "token_type_ids" in batch:
        assert torch.equal(inputs["token_type_ids"], batch["token_type_ids"])


def test_augpro_mix_plain_projection_is_splice(tokenizer, sst2, minilm_table):
    """Without a degree, each projected mixed position returns one of the two sides' tokens
    (DESIGN §2: the projection of a mix is the token of the heavier side) on the real table."""
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=1,
                                                     num_attention_heads=6, intermediate_size=64)).eval()
    model.get_input_embeddings().weight.data.copy_(minilm_table)
    batch = make_batch(sst2.train, tokenizer, n=64)
    ctx = make_ctx(model, model, tokenizer)
    out = build_augmenter("augpro-mix", granularity="token").augment(batch, ctx, torch.Generator().manual_seed(0))
    plan = draw_mix_plan(batch, ctx.special_ids, torch.Generator().manual_seed(0), 0.4, "token")
    partner = plan.partner_ids(batch["input_ids"])
    new = out.student_inputs["input_ids"]
    m = plan.mixed
    either = (new[m] == batch["input_ids"][m]) | (new[m] == partner[m])
    assert either.float().mean() > 0.99
    heavier = torch.where(plan.lam[m] >= 0.5, batch["input_ids"][m], partner[m])
    assert (new[m] == heavier).float().mean() > 0.97


# ------------------------------------------------------------------ alignment and mixing
def test_segment_alignment_pairs_segments(tokenizer, rte):
    batch = make_batch(rte.train, tokenizer, n=8)
    eligible = eligible_mask(batch["input_ids"], batch["attention_mask"], special_ids_tensor(tokenizer))
    perm = torch.tensor([1, 2, 3, 4, 5, 6, 7, 0])
    pos = segment_alignment(eligible, batch["token_type_ids"], perm)
    tt = batch["token_type_ids"]
    for b in range(8):
        for i in range(pos.shape[1]):
            p = int(pos[b, i])
            if p >= 0:
                assert eligible[perm[b], p]
                assert tt[perm[b], p] == tt[b, i], "mixed across segments"
        # the first content token of the second segment aligns with the partner's
        first_b = int(((tt[b] == 1) & eligible[b]).nonzero()[0])
        first_p = int(((tt[perm[b]] == 1) & eligible[perm[b]]).nonzero()[0])
        assert pos[b, first_b] == first_p


@pytest.mark.parametrize("method", ["mixkd", "fgsm", "augpro-mix", "augpro-fgsm", "knn", "mask", "random"])
def test_seeded_determinism(method, tokenizer, sst2, knn, minilm_table):
    teacher, student = tiny_classifier(seed=1), tiny_classifier(layers=1, seed=2)
    batch = make_batch(sst2.train, tokenizer, n=32)
    ctx = make_ctx(teacher, student, tokenizer)

    def run(seed):
        aug = build_augmenter(method, embedding_table=minilm_table, **({"degree": 0.3} if method not in ("mixkd", "fgsm") else {}))
        prep = PrepareContext(texts=[], input_ids=[r[r != 0].tolist() for r in batch["input_ids"]], token_type_ids=None,
                              tokenizer=tokenizer, max_length=128, copies=1, generator=torch.Generator().manual_seed(seed),
                              show_progress=False)
        aug.prepare(prep)
        out = aug.augment({**batch, "idx": torch.arange(32)}, ctx, torch.Generator().manual_seed(seed))
        return out.student_inputs.get("input_ids", out.student_inputs.get("inputs_embeds"))

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a, b)
    if method != "fgsm":  # FGSM is deterministic given the models: no randomness to vary
        assert not torch.equal(a, c)


def test_mixkd_soft_labels_in_ft_mode(tokenizer, sst2):
    teacher, student = tiny_classifier(seed=1), tiny_classifier(layers=1, seed=2)
    batch = make_batch(sst2.train, tokenizer, n=16)
    ctx = make_ctx(None, student, tokenizer, mode="ft")
    out = build_augmenter("mixkd").augment(batch, ctx, torch.Generator().manual_seed(0))
    assert out.teacher_inputs is None
    assert out.soft_labels.shape == (16, 2)
    assert torch.allclose(out.soft_labels.sum(1), torch.ones(16))


def test_pick_exact_rounding():
    scores = torch.rand(3, 10)
    eligible = torch.ones(3, 10, dtype=torch.bool)
    eligible[1, 5:] = False
    eligible[2] = False
    sel, k = pick_exact(scores, eligible, 0.5)
    assert k.tolist() == [5, 2, 0]  # round(2.5) == 2 (half to even)
    assert sel.sum(1).tolist() == [5, 2, 0]


def test_build_augmenter_rejects_bad_settings():
    from augpro.errors import UserError

    with pytest.raises(UserError, match="unknown augmentation"):
        build_augmenter("backtranslate")
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        build_augmenter("knn", degree=1.5)
    with pytest.raises(UserError, match="does not apply"):
        build_augmenter("mixkd", degree=0.3)


# ------------------------------------------------------------------ fuzzing
_texts = st.one_of(
    st.text(min_size=0, max_size=200),
    st.just(""), st.just("a"), st.just("word"),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=2000, max_size=4000),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(texts=st.lists(st.tuples(_texts, _texts), min_size=2, max_size=5),
       method=st.sampled_from(["mixkd", "fgsm", "augpro-mix", "augpro-fgsm", "knn", "mask", "random"]),
       degree=st.sampled_from([None, 0.0, 0.3, 1.0]), seed=st.integers(0, 2**31))
def test_fuzz_every_token_augmenter(texts, method, degree, seed, tokenizer, knn, minilm_table):
    """Arbitrary unicode, empty, one-token and over-long sentence pairs: no crash, structure kept."""
    teacher, student = _fuzz_models()
    split = Split(texts, [0] * len(texts))
    ds = encode(split, tokenizer, max_length=64)
    batch = pad_batch([ds[i] for i in range(len(ds))], tokenizer.pad_token_id)
    ctx = make_ctx(teacher, student, tokenizer)
    kwargs = {} if method in ("mixkd", "fgsm") else {"degree": degree if degree is not None or method.startswith("augpro") else 0.3}
    aug = build_augmenter(method, embedding_table=minilm_table, **kwargs)
    aug.prepare(PrepareContext(texts=texts, input_ids=ds.encodings["input_ids"], token_type_ids=ds.encodings["token_type_ids"],
                               tokenizer=tokenizer, max_length=64, copies=1,
                               generator=torch.Generator().manual_seed(seed), show_progress=False))
    out = aug.augment(batch, ctx, torch.Generator().manual_seed(seed))
    eligible = eligible_mask(batch["input_ids"], batch["attention_mask"], ctx.special_ids)
    assert (out.changed <= out.eligible).all()
    if "input_ids" in out.student_inputs:
        _assert_structure_kept(batch, out.student_inputs, eligible)
        if kwargs.get("degree") is not None:
            expected = torch.tensor([round(kwargs["degree"] * int(n)) for n in eligible.sum(1)])
            assert torch.equal(out.changed, expected)
    else:
        assert out.student_inputs["inputs_embeds"].shape[:2] == batch["input_ids"].shape


_MODELS: dict = {}


def _fuzz_models():
    if not _MODELS:
        _MODELS["m"] = (tiny_classifier(seed=1), tiny_classifier(layers=1, seed=2))
    return _MODELS["m"]
