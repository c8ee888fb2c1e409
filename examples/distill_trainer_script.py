"""DistillTrainer in a plain Hugging Face script (the shape of transformers' ``run_glue.py``).

Tokenize a dataset, build ``TrainingArguments``, hand ``DistillTrainer`` a student, a teacher and
an augmenter, train, evaluate. The data is a ``datasets.Dataset`` when the ``datasets`` package is
installed, else a plain list of dicts (both work). Runs as is on tiny random models.
"""

import argparse
import tempfile

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, TrainingArguments

import augpro
from augpro.models import default_model_dir

ROWS = [("a gorgeous, witty, seductive movie.", 1), ("the worst film of the year.", 0),
        ("an intelligent and moving story of love and loss", 1), ("it drags on and on with no point at all", 0),
        ("one of the most beautiful films i have seen", 1), ("a tedious, joyless mess", 0),
        ("the cast is superb and the script sparkles", 1), ("flat, lifeless and badly acted", 0)]


def tiny_bert(layers: int, seed: int) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)
    return BertForSequenceClassification(config)


def make_dataset(rows, tokenizer):
    """Tokenized examples with a ``label`` column: a datasets.Dataset if available, else a list."""
    try:
        import datasets
    except ImportError:
        return [dict(tokenizer(text, truncation=True, max_length=64), label=label) for text, label in rows]
    ds = datasets.Dataset.from_dict({"sentence": [t for t, _ in rows], "label": [y for _, y in rows]})
    return ds.map(lambda b: tokenizer(b["sentence"], truncation=True, max_length=64), batched=True)


def accuracy(prediction) -> dict:
    return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--augment", default="augpro-mix", choices=[m for m in augpro.METHODS if m != "none"])
    parser.add_argument("--degree", type=float, default=0.3)
    parser.add_argument("--max-steps", type=int, default=4)
    opts = parser.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    teacher, student = tiny_bert(layers=2, seed=0), tiny_bert(layers=1, seed=1)
    train = make_dataset(ROWS, tokenizer)
    degree = None if opts.augment in ("mixkd", "fgsm") else opts.degree
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, max_steps=opts.max_steps, per_device_train_batch_size=4,
                                 learning_rate=1e-3, report_to=[], save_strategy="no", logging_steps=2,
                                 dataloader_pin_memory=torch.cuda.is_available())
        trainer = augpro.DistillTrainer(
            model=student, teacher=teacher, augmenter=augpro.build_augmenter(opts.augment, degree=degree),
            args=args, train_dataset=train, eval_dataset=train, processing_class=tokenizer,
            compute_metrics=accuracy, temperature=2.0)
        trainer.train()
        print("dev:", trainer.evaluate())
        print("augmentation:", trainer.augmentation_summary())


if __name__ == "__main__":
    main()
