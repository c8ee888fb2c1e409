"""The CLI's commands as Python calls: train a teacher, distil a student, read the metrics.

``augpro.train_teacher``, ``augpro.distill`` and ``augpro.finetune`` take the CLI's flags as
keywords and return what ``metrics.json`` holds. Here the data is a small CSV and the "pretrained"
checkpoint a tiny random BERT saved to a temporary folder, so it runs in seconds; leave out
``model=``/``student=`` for the default MiniLM-L6 weights and give ``task="sst2"`` with your GLUE
folder as ``data_dir=`` for real runs.
"""

import csv
import tempfile
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

import augpro
from augpro.models import default_model_dir

ROWS = [("a gorgeous, witty, seductive movie.", 1), ("the worst film of the year.", 0),
        ("an intelligent and moving story of love and loss", 1), ("it drags on and on with no point at all", 0),
        ("one of the most beautiful films i have seen", 1), ("a tedious, joyless mess", 0),
        ("the cast is superb and the script sparkles", 1), ("flat, lifeless and badly acted", 0)] * 4

with tempfile.TemporaryDirectory() as tmp:
    tmp = Path(tmp)
    torch.manual_seed(0)
    base = BertForSequenceClassification(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=2))
    base.save_pretrained(tmp / "base")
    AutoTokenizer.from_pretrained(default_model_dir()).save_pretrained(tmp / "base")
    for name in ("train", "dev"):
        with open(tmp / f"{name}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("sentence", "label"), *ROWS])

    data = dict(train_file=str(tmp / "train.csv"), dev_file=str(tmp / "dev.csv"), text_columns="sentence",
                label_column="label", max_steps=4, batch_size=8, save_checkpoints=False, progress=False)
    teacher = augpro.train_teacher(model=str(tmp / "base"), output_dir=str(tmp / "teacher"), **data)
    student = augpro.distill(teacher=str(tmp / "teacher"), student=str(tmp / "base"), student_layers=1,
                             augment="augpro-mix", degree=0.3, output_dir=str(tmp / "kd"), **data)
    print("teacher dev:", teacher["dev"])
    print("student dev:", student["dev"], f"({student['layers']} layer, {student['parameters']:,} parameters)")
    print("realised degree:", round(student["augmentation"]["realised_degree"], 3))
    try:
        augpro.distill(teacher=str(tmp / "teacher"), lerning_rate=1e-4)
    except augpro.UserError as err:
        print("error:", err)
