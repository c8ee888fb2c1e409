"""Figure 4 — KD epoch without augmentation: cached teacher logits vs a live teacher.

MiniLM-L6 teacher, 2-layer student, SST-2 rows, batch 32, dynamic padding. One epoch = every row
once (same random batch order for both). ``cached``: the rows carry the teacher's logits
(computed once by :func:`augpro.runner.predict_logits` and kept on disk by the runner), so a step
is the student's forward/backward only. ``live``: the same trainer runs the teacher on every
batch. Steps alternate between the two (the order flipped every batch) and each epoch time is the
sum of its steps; the one-time cost of building the cache is reported beside it.
"""

from __future__ import annotations

import time

from benchmarks import _common as C

SIZES = {
    "tiny": dict(rows=32, batch=8, epochs=1),
    "quick": dict(rows=160, batch=32, epochs=1),
    "full": dict(rows=640, batch=32, epochs=2),
}


def run(report: C.Report, mode: str = "quick") -> None:
    from augpro.runner import predict_logits

    cfg = SIZES[mode]
    report.section(f"4. teacher cache (no-DA KD epoch of {cfg['rows']} SST-2 rows, batch {cfg['batch']}, "
                   f"{cfg['epochs']} epoch(s) each, steps interleaved)")
    teacher, student = C.teacher_and_student(tiny=mode == "tiny")
    live_ds = C.encoded_rows(cfg["rows"])
    cached_ds = C.encoded_rows(cfg["rows"])
    t0 = time.perf_counter()
    logits = predict_logits(teacher, cached_ds.encodings, 128, C.tokenizer().pad_token_id)
    build = time.perf_counter() - t0
    cached_ds.attach("teacher_logits", logits)
    trainers = {"cached": C.make_trainer(student, teacher, cached_ds, None, cfg["batch"]),
                "live": C.make_trainer(student, teacher, live_ds, None, cfg["batch"])}
    n_batches = -(-cfg["rows"] // cfg["batch"])
    sets = {k: C.batches(ds, cfg["batch"], n_batches) for k, ds in (("cached", cached_ds), ("live", live_ds))}
    # warm-up step each
    C.train_step(trainers["cached"], sets["cached"][0])
    C.train_step(trainers["live"], sets["live"][0])
    epoch = {"cached": [], "live": []}
    step_ratios = []
    for _ in range(cfg["epochs"]):
        total = {"cached": 0.0, "live": 0.0}
        for i in range(n_batches):
            names = ["cached", "live"] if i % 2 == 0 else ["live", "cached"]
            t = C.interleaved({k: (lambda k=k: C.train_step(trainers[k], sets[k][i])) for k in names},
                              reps=1, warmup=0)
            for k in names:
                total[k] += t[k][0]
            step_ratios.append(t["live"][0] / t["cached"][0])
        for k in total:
            epoch[k].append(total[k])
    med = {k: C.median(v) for k, v in epoch.items()}
    report.value("epoch_s[cached]", med["cached"], "s")
    report.value("epoch_s[live]", med["live"], "s")
    report.value("cache_build_s", build, "s (one-time: teacher inference over the rows, batched by length)")
    report.ratio("cached_teacher_speedup", med["live"] / med["cached"],
                 f"live {C.fmt_s(med['live'])} vs cached {C.fmt_s(med['cached'])} per epoch; median per-step "
                 f"ratio {C.median(step_ratios):.2f}; cache pays for itself after "
                 f"{build / max(1e-9, med['live'] - med['cached']):.2f} epochs")
    report.target("cached_teacher_speedup", ">=", 1.5)
