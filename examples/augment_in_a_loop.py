"""AugPro in your own training loop: distil a student on AugPro-Mix views of each batch.

Runs as is on tiny randomly initialised models (seconds on a CPU). In real use, load your
fine-tuned teacher and your student with ``from_pretrained`` instead of ``tiny_bert``; then the
tokenizer is found beside them and ``tokenizer=`` may be left out.
"""

import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

import augpro
from augpro.models import default_model_dir  # the offline MiniLM tokenizer (BERT uncased vocabulary)


def tiny_bert(layers: int, seed: int) -> BertForSequenceClassification:
    """A randomly initialised 2-label BERT over the BERT uncased vocabulary."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, num_labels=2)
    return BertForSequenceClassification(config)


def kd_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the label distribution, batch mean."""
    return F.kl_div(F.log_softmax(student_logits, -1), F.log_softmax(teacher_logits, -1),
                    reduction="batchmean", log_target=True)


tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
teacher = tiny_bert(layers=2, seed=0).eval()
student = tiny_bert(layers=1, seed=1)
texts = ["a gorgeous, witty, seductive movie.", "the worst film of the year.",
         "an intelligent and moving story of love and loss", "it drags on and on with no point at all"]

augmenter = augpro.AugProMix(degree=0.3)  # change exactly 30% of each row's real tokens
optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)
generator = torch.Generator().manual_seed(0)

for step in range(3):
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    view = augmenter.augment(batch, teacher=teacher, student=student, tokenizer=tokenizer, generator=generator)
    with torch.no_grad():
        t_orig = teacher(**batch).logits
        t_view = teacher(**view).logits  # the teacher reads the same real tokens as the student
    loss = kd_loss(t_orig, student(**batch).logits) + kd_loss(t_view, student(**view).logits)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    print(f"step {step}: loss {loss.item():.4f}, changed {view.changed.tolist()} of {view.eligible.tolist()} tokens")

print("original: ", texts[0])
print("augmented:", tokenizer.decode(view["input_ids"][0], skip_special_tokens=True))
