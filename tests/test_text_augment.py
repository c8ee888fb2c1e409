"""Word-level text augmenters (WordNet synonyms, EDA) and the offline WordNet setup."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from augpro.augment.base import PrepareContext
from augpro.augment.text import EDA, EDA_OPERATIONS, SynonymReplacement, TextEdit, eda, synonym_replace, word_diff
from augpro.errors import UserError
from augpro import wordnet as wn_mod


@pytest.fixture(scope="module")
def wordnet() -> None:
    try:
        wn_mod.ensure_wordnet()
    except UserError as exc:
        pytest.skip(f"WordNet unavailable offline ({exc})")


# Common words whose every synonym is a single word, so that position-wise comparison is exact.
@pytest.fixture(scope="module")
def single_word_vocab(wordnet) -> list[str]:
    pool = "happy sad bad nice quick small bright fast awful wonderful terrible".split()
    vocab = [w for w in pool if wn_mod.synonyms(w) and all(" " not in s for s in wn_mod.synonyms(w))]
    assert len(vocab) >= 8, vocab
    return vocab


def rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


def is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(w in it for w in short)


# --------------------------------------------------------------------------------------------
# WordNet
# --------------------------------------------------------------------------------------------

def test_lexnames_is_wordnets_fixed_list() -> None:
    lines = wn_mod.lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[2] == "02\tadv.all\t4"
    assert lines[3] == "03\tnoun.Tops\t1"
    assert lines[28] == "28\tnoun.time\t1"
    assert lines[29] == "29\tverb.body\t2"
    assert lines[43] == "43\tverb.weather\t2"
    assert lines[44] == "44\tadj.ppl\t3"
    for i, line in enumerate(lines):
        num, name, cat = line.split("\t")
        assert int(num) == i
        assert int(cat) == {"noun": 1, "verb": 2, "adj": 3, "adv": 4}[name.split(".")[0]]


def test_synonyms(wordnet) -> None:
    sad = wn_mod.synonyms("sad")
    assert "deplorable" in sad and "sorry" in sad
    assert "sad" not in sad
    assert list(sad) == sorted(set(sad))
    movie = wn_mod.synonyms("Movie")
    assert "motion picture" in movie  # underscores become spaces
    assert all("_" not in s and s == s.lower() for s in movie)
    assert wn_mod.synonyms("xqzt") == ()
    assert wn_mod.synonyms("") == ()


def fresh_wordnet_loader():
    """An unloaded ``nltk.corpus.wordnet``, built as NLTK builds it."""
    from nltk.corpus.reader import CorpusReader
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.corpus.util import LazyCorpusLoader

    omw = LazyCorpusLoader("omw-2.0", CorpusReader, r".*/wn-data-.*\.tab", encoding="utf8")
    return LazyCorpusLoader("wordnet", WordNetCorpusReader, omw)


def test_ensure_wordnet_copies_debian_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From scratch: the files are copied (not linked) with a lexnames file, and NLTK loads them."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    source = Path("/usr/share/wordnet")
    if not (source / "data.noun").is_file():
        pytest.skip("Debian's wordnet-base is not installed")
    monkeypatch.setenv("AUGPRO_CACHE", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setattr(nltk.corpus, "wordnet", fresh_wordnet_loader())
    monkeypatch.setattr(wn_mod, "_ready", False)
    monkeypatch.setattr(wn_mod, "_source_dirs", lambda: [source])
    wn_mod.ensure_wordnet()
    root = tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert nltk.data.path[0] == str(tmp_path / "nltk_data")
    assert (root / "lexnames").read_text() == wn_mod.lexnames_text()
    for name in ("data.noun", "index.verb", "adj.exc"):
        assert (root / name).is_file() and not (root / name).is_symlink()
    assert isinstance(nltk.corpus.wordnet, WordNetCorpusReader)
    assert "deplorable" in {n for s in nltk.corpus.wordnet.synsets("sad") for n in s.lemma_names()}
    # idempotent: a second call neither copies nor changes the path again
    mtime = (root / "data.noun").stat().st_mtime_ns
    wn_mod.ensure_wordnet()
    monkeypatch.setattr(wn_mod, "_ready", False)
    wn_mod.ensure_wordnet()
    assert (root / "data.noun").stat().st_mtime_ns == mtime
    assert nltk.data.path.count(str(tmp_path / "nltk_data")) == 1


def test_ensure_wordnet_missing_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    monkeypatch.setenv("AUGPRO_CACHE", str(tmp_path))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nothing")])
    monkeypatch.setattr(nltk.corpus, "wordnet", fresh_wordnet_loader())
    monkeypatch.setattr(wn_mod, "_ready", False)
    monkeypatch.setattr(wn_mod, "_source_dirs", lambda: [tmp_path / "no-wordnet"])
    with pytest.raises(UserError) as info:
        wn_mod.ensure_wordnet()
    message = str(info.value)
    assert "apt-get install -y wordnet-base wordnet-sense-index" in message
    assert "\n" not in message
    assert not (tmp_path / "nltk_data" / "corpora" / "wordnet").exists()


# --------------------------------------------------------------------------------------------
# synonym_replace
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("degree", [0.1, 0.3, 0.5, 0.7, 1.0])
def test_synonym_replace_exact_degree(wordnet, single_word_vocab, degree: float) -> None:
    words = (single_word_vocab * 3)[:20]
    for seed in range(5):
        out = synonym_replace(" ".join(words), degree, rng(seed))
        new = out.text.split()
        assert len(new) == len(words)
        diff = [i for i, (a, b) in enumerate(zip(words, new)) if a != b]
        assert out.changed == len(diff) == round(degree * len(words))
        assert out.eligible == len(words) and out.shortfall == 0
        for i in diff:
            assert new[i] in wn_mod.synonyms(words[i])


def test_synonym_replace_common_sentence(wordnet) -> None:
    text = "good movie great film happy day"
    for degree, target in ((0.3, 2), (0.5, 3), (1.0, 6)):
        out = synonym_replace(text, degree, rng(1))
        assert (out.changed, out.eligible, out.shortfall) == (target, 6, 0)
        assert out.text != text


def test_synonym_replace_reports_shortfall(wordnet) -> None:
    text = "xqzt blorf happy zzkq , vrrm"
    out = synonym_replace(text, 1.0, rng(0))
    assert out.eligible == 6
    assert out.changed == 1  # only "happy" has synonyms ("," is not alphabetic)
    assert out.shortfall == 5
    assert out.text.split()[2] in wn_mod.synonyms("happy")
    half = synonym_replace(text, 0.5, rng(0))
    assert (half.changed, half.shortfall) == (1, 2)


def test_synonym_replace_keeps_capital(wordnet) -> None:
    out = synonym_replace("Happy Sad", 1.0, rng(3))
    a, b = out.text.split()
    assert a[0].isupper() and b[0].isupper()
    assert a.lower() in wn_mod.synonyms("happy") and b.lower() in wn_mod.synonyms("sad")


def test_synonym_replace_seeding(wordnet) -> None:
    text = "good movie great film happy day with a nice story and a bright cast"
    assert synonym_replace(text, 0.5, rng(7)) == synonym_replace(text, 0.5, rng(7))
    outs = {synonym_replace(text, 0.5, rng(seed)).text for seed in range(4)}
    assert len(outs) == 4


def test_synonym_replace_degree_zero_and_bad_degree(wordnet) -> None:
    text = "good  movie\tgreat film"
    assert synonym_replace(text, 0.0, rng()) == TextEdit(text, 0, 4, 0)
    with pytest.raises(ValueError):
        synonym_replace(text, 1.5, rng())


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text(wordnet, text: str) -> None:
    assert synonym_replace(text, 0.5, rng()) == TextEdit(text, 0, 0, 0)
    for op in EDA_OPERATIONS:
        assert eda(text, 0.5, rng(), op) == TextEdit(text, 0, 0, 0)


# --------------------------------------------------------------------------------------------
# EDA
# --------------------------------------------------------------------------------------------

SENTENCE = "the good movie was a great film on a happy day with a nice cast and a bright story"


def test_eda_swap_keeps_the_words(wordnet) -> None:
    words = SENTENCE.split()
    for seed in range(10):
        out = eda(SENTENCE, 0.1, rng(seed), "swap")  # round(0.1 * 19) = 2 swaps
        new = out.text.split()
        assert sorted(new) == sorted(words)
        assert new != words or out.changed == 0
        assert out.changed == word_diff(words, new)
        assert 0 <= out.changed <= 4 and out.shortfall == 0


def test_eda_swap_single_swap_counts(wordnet) -> None:
    orig = "alpha beta gamma delta epsilon".split()
    seen = set()
    for seed in range(30):
        out = eda(" ".join(orig), 0.2, rng(seed), "swap")  # one swap
        new = out.text.split()
        moved = [k for k, (a, b) in enumerate(zip(orig, new)) if a != b]
        assert len(moved) == 2
        adjacent = moved[1] - moved[0] == 1
        # the diff keeps one of two adjacent swapped words in place
        assert out.changed == (1 if adjacent else 2)
        seen.add(adjacent)
    assert seen == {True, False}


def test_eda_swap_cannot_change_identical_words(wordnet) -> None:
    out = eda("la la la la", 0.5, rng(0), "swap")
    assert out == TextEdit("la la la la", 0, 4, 2)


def test_eda_delete_shortens(wordnet) -> None:
    words = SENTENCE.split()
    out = eda(SENTENCE, 0.2, rng(0), "delete")  # round(0.2 * 19) = 4
    new = out.text.split()
    assert len(new) == len(words) - 4
    assert is_subsequence(new, words)
    assert out.changed == 4 and out.shortfall == 0


def test_eda_delete_keeps_one_word(wordnet) -> None:
    out = eda("lonely", 1.0, rng(0), "delete")
    assert out == TextEdit("lonely", 0, 1, 1)
    out = eda("two words", 1.0, rng(0), "delete")
    assert len(out.text.split()) == 1 and out.changed == 1 and out.shortfall == 1


def test_eda_insert_lengthens(wordnet) -> None:
    words = SENTENCE.split()
    out = eda(SENTENCE, 0.1, rng(0), "insert")  # 2 insertions
    new = out.text.split()
    assert len(new) >= len(words) + 2
    assert is_subsequence(words, new)
    assert out.changed == len(new) - len(words) and out.shortfall == 0


def test_eda_insert_without_synonyms_falls_short(wordnet) -> None:
    out = eda("xqzt blorf zzkq", 1.0, rng(0), "insert")
    assert out == TextEdit("xqzt blorf zzkq", 0, 3, 3)


def test_eda_synonym_op(wordnet, single_word_vocab) -> None:
    words = (single_word_vocab * 2)[:15]
    out = eda(" ".join(words), 0.2, rng(0), "synonym")  # 3 replacements
    new = out.text.split()
    assert sum(a != b for a, b in zip(words, new)) == 3 == out.changed
    assert out.shortfall == 0


@pytest.mark.parametrize("op", EDA_OPERATIONS)
def test_eda_degree_zero_is_identity(wordnet, op: str) -> None:
    assert eda(SENTENCE + "  !", 0.0, rng(), op) == TextEdit(SENTENCE + "  !", 0, 20, 0)


@pytest.mark.parametrize("op", EDA_OPERATIONS)
def test_eda_small_degree_still_applies_one_operation(wordnet, op: str) -> None:
    out = eda(SENTENCE, 0.01, rng(2), op)
    assert out.changed >= 1 and out.text != SENTENCE


def test_eda_seeding(wordnet) -> None:
    for op in EDA_OPERATIONS:
        assert eda(SENTENCE, 0.2, rng(5), op) == eda(SENTENCE, 0.2, rng(5), op)
        assert len({eda(SENTENCE, 0.2, rng(seed), op).text for seed in range(4)}) > 1


def test_eda_bad_arguments(wordnet) -> None:
    with pytest.raises(ValueError):
        eda(SENTENCE, 0.1, rng(), "shuffle")
    with pytest.raises(ValueError):
        eda(SENTENCE, -0.1, rng(), "swap")
    with pytest.raises(ValueError):
        EDA(operations=("swap", "rotate"))
    with pytest.raises(ValueError):
        SynonymReplacement(degree=2.0)


def test_word_diff_counts() -> None:
    a = "a b c d".split()
    assert word_diff(a, a) == 0
    assert word_diff(a, "a c d".split()) == 1  # deletion
    assert word_diff(a, "a b x c d".split()) == 1  # insertion
    assert word_diff(a, "c b a d".split()) == 2  # swap
    assert word_diff(a, "a x c d".split()) == 1  # replacement
    assert word_diff([], []) == 0


@settings(max_examples=100, deadline=None)
@given(text=st.text(), degree=st.floats(0.0, 1.0), seed=st.integers(0, 2**32), op=st.sampled_from(EDA_OPERATIONS))
def test_never_raise_on_arbitrary_text(wordnet, text: str, degree: float, seed: int, op: str) -> None:
    n_words = len(text.split())
    out = synonym_replace(text, degree, random.Random(seed))
    assert 0 <= out.changed <= out.eligible == n_words
    assert out.changed + out.shortfall == (round(degree * n_words) if n_words else 0)
    edit = eda(text, degree, random.Random(seed), op)
    assert edit.eligible == n_words and edit.shortfall >= 0
    assert 0 <= edit.changed <= max(n_words, len(edit.text.split()))
    if op in ("swap", "delete"):
        assert edit.changed <= edit.eligible
    if degree == 0 or n_words == 0:
        assert edit.text == text and edit.changed == 0


# --------------------------------------------------------------------------------------------
# Pools with the real tokenizer
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    from augpro.models import load_tokenizer

    try:
        return load_tokenizer(None)
    except UserError as exc:
        pytest.skip(f"MiniLM tokenizer unavailable ({exc})")


@pytest.fixture(scope="module")
def sst2_rows() -> list[tuple[str, ...]]:
    from augpro.data import load_task_data
    from augpro.tasks import get_task

    data_dir = os.environ.get("AUGPRO_DATA_DIR", "/work/shared/data/glue")
    if not os.path.isdir(os.path.join(data_dir, "SST-2")):
        pytest.skip(f"GLUE data not found in {data_dir}")
    return load_task_data(get_task("sst2"), data_dir=data_dir).train.texts[:20]


def make_ctx(texts: list[tuple[str, ...]], tok, seed: int = 0, copies: int = 2) -> PrepareContext:
    columns = [list(c) for c in zip(*texts)]
    enc = tok(*columns, truncation=True, max_length=128)
    return PrepareContext(
        texts=texts, input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"), tokenizer=tok,
        max_length=128, copies=copies, generator=torch.Generator().manual_seed(seed), label_pool=None,
        show_progress=False,
    )


@pytest.mark.parametrize("cls", [SynonymReplacement, EDA])
def test_pool_on_sst2(wordnet, tokenizer, sst2_rows, cls) -> None:
    aug = cls(degree=0.3)
    aug.prepare(make_ctx(sst2_rows, tokenizer))
    pool = aug.pool
    assert len(pool) == 2
    for view in pool:
        assert len(view.input_ids) == len(view.texts) == len(sst2_rows) == len(view.changed) == len(view.eligible)
        for ids, texts in zip(view.input_ids, view.texts):
            assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
            assert ids == tokenizer(texts[0], truncation=True, max_length=128)["input_ids"]
        assert view.eligible.tolist() == [len(t[0].split()) for t in sst2_rows]
        assert (view.changed >= 0).all()
        if cls is SynonymReplacement:
            assert (view.changed <= view.eligible).all()
    assert pool[0].texts != pool[1].texts  # the copies differ
    assert any(t != o for t, o in zip(pool[0].texts, sst2_rows))
    # gather a batch through the pool
    batch = {"idx": torch.tensor([3, 0, 7]), "input_ids": torch.zeros(3, 4, dtype=torch.long)}
    out = aug.augment(batch, None, torch.Generator(), copy=1)
    assert out.student_inputs["input_ids"].shape[0] == 3
    assert out.student_inputs["attention_mask"].sum(1).tolist() == [len(pool[1].input_ids[i]) for i in (3, 0, 7)]


def test_synonym_pool_realises_the_degree(wordnet, tokenizer, sst2_rows) -> None:
    aug = SynonymReplacement(degree=0.3)
    ctx = make_ctx(sst2_rows, tokenizer, copies=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aug.prepare(ctx)
    view = aug.pool[0]
    targets = [round(0.3 * len(t[0].split())) for t in sst2_rows]
    assert int(view.changed.sum()) + aug.last_shortfall == sum(targets)
    assert (view.changed <= torch.tensor(targets)).all()


def test_pool_is_seeded(wordnet, tokenizer, sst2_rows) -> None:
    views = []
    for seed in (0, 0, 1):
        aug = EDA(degree=0.2)
        aug.prepare(make_ctx(sst2_rows, tokenizer, seed=seed, copies=1))
        views.append(aug.pool[0])
    assert views[0].texts == views[1].texts and views[0].input_ids == views[1].input_ids
    assert views[0].texts != views[2].texts


def test_pool_on_pairs_and_shortfall_warning(wordnet, tokenizer) -> None:
    texts = [("xqzt blorf happy zzkq", "the good movie"), ("a great film .", "vrrm qqqx")]
    aug = SynonymReplacement(degree=1.0)
    with pytest.warns(UserWarning, match=r"7 of the word changes that degree 1.0 asks for were impossible .*fell short"):
        aug.prepare(make_ctx(texts, tokenizer, copies=1))
    view = aug.pool[0]
    assert view.token_type_ids is not None and all(1 in t for t in view.token_type_ids)
    assert view.eligible.tolist() == [7, 6]
    # example 0: happy + the/good/movie ("the" has no synonyms); example 1: a/great/film (3), none in "vrrm qqqx"
    assert view.changed.tolist() == [3, 3]
    assert aug.last_shortfall == (7 - 3) + (6 - 3)
    for new, old in zip(view.texts, texts):
        assert len(new) == 2 and new != old
    assert view.texts[0][0].split()[0] == "xqzt"
