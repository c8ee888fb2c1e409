"""Figure 6 — bf16 autocast on this CPU: teacher labelling, its agreement with fp32, a student step.

* **Teacher labelling** (``--bf16-teacher``): :func:`augpro.runner.predict_logits` of the fine-tuned
  MiniLM-L6 SST-2 teacher over SST-2 training rows (batched by length, batch 128, max length
  128), fp32 against bf16 autocast, interleaved repetitions, medians: ``bf16_teacher_speedup``.
* **Agreement**: the same teacher's argmax on the whole SST-2 dev set (872 rows), fp32 against
  bf16 (``bf16_teacher_agreement``), with the largest logit difference, the mean difference of the
  softmax probabilities (what a KD target sees) and both dev accuracies.
* **Student step**: a KD + AugPro-Mix step (batch 32, as in figure 1: teacher logits on the
  original batch cached, the live teacher on the augmented one) in fp32, with ``--bf16`` (the
  student's forward under bf16 autocast, as ``Trainer.train`` sets it up) and with ``--bf16
  --bf16-teacher`` (the live teacher too). Paired per batch, medians:
  ``bf16_student_step_speedup`` (fp32 / ``--bf16``) and ``bf16_step_speedup`` (fp32 / both).

The teacher is fine-tuned once on 2,000 SST-2 rows (the methods study's teacher budget) and kept
in augpro's cache (:func:`benchmarks._common.fine_tuned_teacher`); ``--tiny`` uses a 2-step one.
"""

from __future__ import annotations

import torch

from benchmarks import _common as C

SIZES = {
    "tiny": dict(rows=32, dev=64, reps=1, batch=8, step_rows=32, step_reps=1),
    "quick": dict(rows=512, dev=None, reps=3, batch=32, step_rows=256, step_reps=4),
    "full": dict(rows=2000, dev=None, reps=5, batch=32, step_rows=1024, step_reps=12),
}


def _label(teacher, encodings, bf16: bool) -> torch.Tensor:
    from augpro.runner import predict_logits

    return predict_logits(teacher, encodings, 128, C.tokenizer().pad_token_id, bf16=bf16)


def run(report: C.Report, mode: str = "quick") -> None:
    from augpro.augment import AugProMix
    from augpro.data import encode, load_glue_split
    from augpro.models import load_classifier, make_layer_subset_student
    from augpro.tasks import get_task

    cfg = SIZES[mode]
    report.section(f"6. bf16 autocast (teacher labelling of {cfg['rows']} SST-2 rows, {cfg['reps']} interleaved reps; "
                   f"agreement on SST-2 dev; KD+AugPro-Mix step, {cfg['step_reps']} paired rounds)")
    task = get_task("sst2")
    teacher = load_classifier(C.fine_tuned_teacher(mode), task, require_head=True).eval()

    # --- labelling speed
    rows = C.encoded_rows(cfg["rows"])
    fns = {"fp32": lambda: _label(teacher, rows.encodings, False), "bf16": lambda: _label(teacher, rows.encodings, True)}
    times = C.interleaved(fns, reps=cfg["reps"], warmup=1)
    med = {k: C.median(v) for k, v in times.items()}
    for k, v in med.items():
        report.value(f"teacher_label_s[{k}]", v, f"s ({cfg['rows']} rows)")
    report.ratio("bf16_teacher_speedup", med["fp32"] / med["bf16"],
                 f"fp32 {C.fmt_s(med['fp32'])} vs bf16 {C.fmt_s(med['bf16'])} for {cfg['rows']} rows; "
                 f"{cfg['rows'] / med['bf16']:.0f} vs {cfg['rows'] / med['fp32']:.0f} rows/s")

    # --- agreement on SST-2 dev
    dev = load_glue_split(task, "dev", C.data_dir())
    if cfg["dev"]:
        dev = dev.select(range(cfg["dev"]))
    dev_ds = encode(dev, C.tokenizer(), 128)
    fp32, bf16 = _label(teacher, dev_ds.encodings, False), _label(teacher, dev_ds.encodings, True)
    labels = torch.tensor(dev.labels)
    agree = float((fp32.argmax(-1) == bf16.argmax(-1)).float().mean())
    flips = int((fp32.argmax(-1) != bf16.argmax(-1)).sum())
    prob_diff = float((fp32.softmax(-1) - bf16.softmax(-1)).abs().max(-1).values.mean())
    report.ratio("bf16_teacher_agreement", agree,
                 f"{flips} of {len(labels)} dev argmaxes differ; max |logit diff| "
                 f"{float((fp32 - bf16).abs().max()):.4f}; mean |prob diff| {prob_diff:.5f}; dev accuracy fp32 "
                 f"{float((fp32.argmax(-1) == labels).float().mean()):.4f}, bf16 "
                 f"{float((bf16.argmax(-1) == labels).float().mean()):.4f}")

    # --- a KD + AugPro-Mix step
    if mode == "tiny":
        base_student = C.teacher_and_student(tiny=True)[1]
    else:  # a 2-layer student of the pretrained MiniLM-L6, as in figure 1
        torch.manual_seed(0)
        base_student = make_layer_subset_student(load_classifier(None, task), "2")
    ds = C.encoded_rows(cfg["step_rows"], with_logits_of=teacher)
    trainers = {
        "fp32": C.make_trainer(base_student, teacher, ds, AugProMix(), cfg["batch"]),
        "bf16": C.make_trainer(base_student, teacher, ds, AugProMix(), cfg["batch"], bf16=True),
        "bf16+teacher": C.make_trainer(base_student, teacher, ds, AugProMix(), cfg["batch"], bf16=True,
                                       bf16_teacher=True),
    }
    n_batches = max(1, cfg["step_rows"] // cfg["batch"])
    batch_list = C.batches(ds, cfg["batch"], n_batches)
    for tr in trainers.values():  # warm-up (first bf16 calls create their kernels)
        C.train_step(tr, batch_list[0])
    names = list(trainers)
    steps: dict[str, list[float]] = {n: [] for n in names}
    for r in range(cfg["step_reps"]):
        order = names if r % 2 == 0 else names[::-1]
        t = C.interleaved({n: (lambda n=n: C.train_step(trainers[n], batch_list[r % n_batches])) for n in order},
                          reps=1, warmup=0)
        for n in names:
            steps[n].extend(t[n])
    for n in names:
        report.value(f"step_s[{n}]", C.median(steps[n]), "s (median)")

    def paired(n: str) -> float:
        return C.median([a / b for a, b in zip(steps["fp32"], steps[n])])

    report.ratio("bf16_student_step_speedup", paired("bf16"),
                 f"fp32 {C.fmt_s(C.median(steps['fp32']))} vs --bf16 {C.fmt_s(C.median(steps['bf16']))} per step")
    report.ratio("bf16_step_speedup", paired("bf16+teacher"),
                 f"--bf16 --bf16-teacher {C.fmt_s(C.median(steps['bf16+teacher']))} per step")
    report.target("bf16_teacher_speedup", ">=", 1.5)
    report.target("bf16_teacher_agreement", ">=", 0.995)
