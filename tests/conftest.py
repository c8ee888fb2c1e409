"""Shared fixtures: the real MiniLM tokenizer, real GLUE rows, tiny random models for mechanics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_DIR = os.environ.get("AUGPRO_DATA_DIR") or str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the test session's caches apart from the user's (but shared within the session)."""
    if "AUGPRO_CACHE" not in os.environ:
        os.environ["AUGPRO_CACHE"] = str(tmp_path_factory.mktemp("augpro-cache"))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def data_dir() -> str:
    if not Path(DATA_DIR, "SST-2", "train.tsv").is_file():
        pytest.skip(f"GLUE data not found at {DATA_DIR}; set AUGPRO_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def tokenizer():
    from augpro.models import load_tokenizer

    return load_tokenizer(None)


@pytest.fixture(scope="session")
def sst2(data_dir):
    from augpro.data import load_task_data
    from augpro.tasks import get_task

    return load_task_data(get_task("sst2"), data_dir=data_dir)


@pytest.fixture(scope="session")
def rte(data_dir):
    from augpro.data import load_task_data
    from augpro.tasks import get_task

    return load_task_data(get_task("rte"), data_dir=data_dir)


def tiny_classifier(num_labels: int = 2, layers: int = 2, seed: int = 0, hidden: int = 32):
    """A randomly initialised BERT classifier over the real 30,522-token vocabulary."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, num_labels=num_labels, max_position_embeddings=512)
    return BertForSequenceClassification(cfg).eval()


@pytest.fixture
def tiny_pair():
    """(teacher, student) tiny random models sharing the BERT vocabulary."""
    return tiny_classifier(layers=2, seed=1), tiny_classifier(layers=1, seed=2)


@pytest.fixture(scope="session")
def minilm_table():
    """The real MiniLM-L6 word-embedding table [30522, 384]."""
    from safetensors import safe_open

    from augpro.models import default_model_dir

    with safe_open(str(Path(default_model_dir()) / "model.safetensors"), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))
        return f.get_tensor(key).float()
