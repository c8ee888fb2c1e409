"""Figure 1 — step overhead of each augmentation method over KD+MixKD.

MiniLM-L6 teacher, 2-layer layer-subset student, SST-2 training rows, batch 32, dynamic padding,
teacher logits on the original batch cached (as the runner does). One *step* is what
``Trainer.train`` does per batch: ``training_step`` (KD loss on the batch + the augmented view,
backward) + optimizer step + zero grad. All methods share the same models and run on the same
batch within a round, interleaved; a ratio is the median over rounds of the per-round ratio
(each round uses another batch, so a ratio of medians would mix batches of different lengths).

MixKD processes the same original + augmented examples as AugPro-Mix (the mix fed as virtual
``inputs_embeds`` to teacher and student, no projection), so ``augpro_mix_vs_mixkd`` isolates the
projection's cost. ``knn`` reads its augmented view (and the teacher's logits on it) from the
offline pool, so it runs no teacher forward at all.

AugPro-Mix projects in the frozen teacher table with the certified pruned search
(``Projector.project_mix``: exact, no ``[n, V]`` GEMM). Besides the shipped augmenters, ``--full``
times two *proposed* variants that live only here (see ``docs/performance.md``): AugPro-FGSM
taking its gradient from the original forward (``proposed_fgsm_reuse_vs_mixkd``) and AugPro-Mix
with one student forward over original + augmented (``proposed_mix_concat_vs_mixkd``).
"""

from __future__ import annotations

import torch

from benchmarks import _common as C

SIZES = {
    "tiny": dict(rows=32, batch=8, reps=1, warmup=1, proposed=False, kd=True),
    "quick": dict(rows=256, batch=32, reps=4, warmup=1, proposed=False, kd=False),
    "full": dict(rows=1024, batch=32, reps=15, warmup=1, proposed=True, kd=True),
}


# ------------------------------------------------------------------------- proposed variants
def proposed_classes():
    """Benchmark-local prototypes of the changes recommended in docs/performance.md."""
    from augpro.augment.augpro import AugProFGSM
    from augpro.augment.project import column_std
    from augpro.augment.base import AugmentContext, eligible_mask
    from augpro.augment.interpolate import forward_inputs, word_embeddings
    from augpro.distill import DistillTrainer, model_inputs
    from augpro.losses import kd_loss, label_loss

    class ReuseTrainer(DistillTrainer):
        """Runs the student's original forward on ``inputs_embeds`` that require grad, so an
        augmenter can take ``d KD / d e`` from that graph (``retain_graph``) instead of running
        its own forward. Otherwise identical to ``DistillTrainer.compute_loss``."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not (getattr(self.augmenter, "reuses_forward", False) and model.training and self.mode == "kd"):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # the table still gets its gradient through e (same graph as input_ids would give)
            e = self.accelerator.unwrap_model(model).get_input_embeddings()(inputs["input_ids"])
            s = model(inputs_embeds=e, **forward_inputs(inputs)).logits
            t = self._teacher_logits(inputs)
            kd = kd_loss(t, s, self.temperature, self.regression)
            loss = self.kd_weight * kd
            if self.ce_weight:
                loss = loss + self.ce_weight * label_loss(s, inputs["labels"], self.regression)
            (grad,) = torch.autograd.grad(kd, e, retain_graph=True)  # the FGSM gradient
            ctx = AugmentContext(student=self.accelerator.unwrap_model(model), teacher=self.teacher, mode="kd",
                                 temperature=self.temperature, regression=self.regression,
                                 teacher_logits=(lambda _b, _t=t: _t), special_ids=self.special_ids.to(s.device),
                                 allowed=self.allowed)
            for copy in range(self.copies):
                aug = self.augmenter.augment_from_grad(inputs, ctx, grad, self._generator(copy))
                s_aug = model(**aug.student_inputs).logits
                with torch.no_grad():
                    t_aug = self.teacher(**aug.teacher_inputs).logits.float()
                loss = loss + self.aug_weight * kd_loss(t_aug, s_aug, self.temperature, self.regression) / self.copies
            return loss

    class ConcatTrainer(DistillTrainer):
        """One student forward over the original and the augmented batch concatenated (AugPro
        keeps every example's length, so the two stack): one embedding backward instead of two
        (the dense ``[V, d]`` embedding gradient is built once) and one larger GEMM per layer."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not (model.training and self.mode == "kd" and self.copies == 1
                    and getattr(self.augmenter, "name", "") == "augpro-mix"):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            t = self._teacher_logits(inputs)
            ctx = AugmentContext(student=self.accelerator.unwrap_model(model), teacher=self.teacher, mode="kd",
                                 temperature=self.temperature, regression=self.regression,
                                 teacher_logits=(lambda _b, _t=t: _t), special_ids=self.special_ids.to(t.device),
                                 allowed=self.allowed)
            aug = self.augmenter.augment(inputs, ctx, self._generator(0), 0)
            orig = model_inputs(inputs)
            both = {k: torch.cat([v, aug.student_inputs[k]]) for k, v in orig.items()}
            logits = model(**both).logits
            s, s_aug = logits[: t.shape[0]], logits[t.shape[0]:]
            loss = self.kd_weight * kd_loss(t, s, self.temperature, self.regression)
            if self.ce_weight:
                loss = loss + self.ce_weight * label_loss(s, inputs["labels"], self.regression)
            with torch.no_grad():
                t_aug = self.teacher(**aug.teacher_inputs).logits.float()
            return loss + self.aug_weight * kd_loss(t_aug, s_aug, self.temperature, self.regression)

    class FGSMReuse(AugProFGSM):
        """AugPro-FGSM whose gradient comes from the trainer's original forward."""

        reuses_forward = True

        @torch.no_grad()
        def augment_from_grad(self, batch, ctx, grad, generator):
            ids = batch["input_ids"]
            table = word_embeddings(ctx.student).detach()
            eligible = eligible_mask(ids, batch["attention_mask"], ctx.special_ids)
            proj = self._projector(ctx.student, ctx, frozen=False)
            std = column_std(table)
            e_adv = table[ids] + (self.eps * std * grad.sign()) * eligible.unsqueeze(-1)
            new_ids = self._project(e_adv, ids, eligible, eligible, grad.norm(dim=-1), proj, generator)
            return self._finish(batch, new_ids, eligible)

    return ReuseTrainer, FGSMReuse, ConcatTrainer


# ------------------------------------------------------------------------------------ figure
def run(report: C.Report, mode: str = "quick") -> None:
    from augpro.augment import AugProFGSM, AugProMix, MixKD, TokenReplacement
    from augpro.augment.base import PrepareContext
    from augpro.runner import predict_logits

    cfg = SIZES[mode]
    tiny = mode == "tiny"
    report.section(f"1. step overhead (batch {cfg['batch']}, {cfg['reps']} interleaved reps, medians)")
    teacher, student = C.teacher_and_student(tiny=tiny)
    ds = C.encoded_rows(cfg["rows"], with_logits_of=teacher)
    tok = C.tokenizer()
    table = teacher.get_input_embeddings().weight.detach()

    knn = TokenReplacement("knn", degree=0.3, embedding_table=table)
    knn.prepare(PrepareContext(
        texts=None, input_ids=ds.encodings["input_ids"], token_type_ids=ds.encodings.get("token_type_ids"),
        tokenizer=tok, max_length=128, copies=1, generator=torch.Generator().manual_seed(0),
        label_pool=lambda enc: predict_logits(teacher, enc, 128, tok.pad_token_id), show_progress=False))

    augmenters = {"mixkd": MixKD(), "augpro-mix": AugProMix(), "augpro-fgsm": AugProFGSM(), "knn": knn}
    if cfg["kd"]:
        augmenters["kd"] = None
    trainers = {name: C.make_trainer(student, teacher, ds, aug, batch_size=cfg["batch"])
                for name, aug in augmenters.items()}
    if cfg["proposed"]:
        ReuseTrainer, FGSMReuse, ConcatTrainer = proposed_classes()
        trainers["proposed-fgsm-reuse"] = C.make_trainer(student, teacher, ds, FGSMReuse(), cfg["batch"],
                                                         trainer_cls=ReuseTrainer)
        trainers["proposed-mix-concat"] = C.make_trainer(student, teacher, ds, AugProMix(), cfg["batch"],
                                                         trainer_cls=ConcatTrainer)

    n_batches = max(1, cfg["rows"] // cfg["batch"])
    batch_list = C.batches(ds, cfg["batch"], n_batches)
    real = [int(b["attention_mask"].sum()) for b in batch_list]
    padded = [b["input_ids"].numel() for b in batch_list]
    report.note(f"{n_batches} distinct batches; real tokens/batch median {C.median(real):.0f}, "
                f"padded {C.median(padded):.0f}")
    # warm-up rounds on a quarter batch (first-call costs, not worth full steps)
    small = {k: v[: max(1, cfg["batch"] // 4)] for k, v in batch_list[0].items()}
    for _ in range(cfg["warmup"]):
        for tr in trainers.values():
            C.train_step(tr, small)
    counter = {"r": 0}
    fns = {}
    for name, tr in trainers.items():
        fns[name] = (lambda tr=tr: C.train_step(tr, batch_list[counter["r"] % n_batches]))
    # one round = every method on the same batch; advance the batch between rounds
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(cfg["reps"]):
        counter["r"] = r
        t = C.interleaved({n: fns[n] for n in (names if r % 2 == 0 else names[::-1])}, reps=1, warmup=0)
        for n in names:
            times[n].extend(t[n])
    med = {n: C.median(v) for n, v in times.items()}
    for n in names:
        report.value(f"step_s[{n}]", med[n], "s (median)")
    base = med["mixkd"]

    def paired(n: str) -> float:
        """Median over rounds of (step of n) / (step of MixKD) on the same batch: batches differ
        in length from round to round, so this, not a ratio of medians, is the figure."""
        return C.median([a / b for a, b in zip(times[n], times["mixkd"])])

    rows = [("augpro_mix_vs_mixkd", "augpro-mix"), ("augpro_fgsm_vs_mixkd", "augpro-fgsm"), ("knn_vs_mixkd", "knn"),
            ("kd_vs_mixkd", "kd"), ("proposed_fgsm_reuse_vs_mixkd", "proposed-fgsm-reuse"),
            ("proposed_mix_concat_vs_mixkd", "proposed-mix-concat")]
    for key, name in rows:
        if name in med:
            report.ratio(key, paired(name), f"{name} {C.fmt_s(med[name])}/step, mixkd {C.fmt_s(base)}/step "
                                            f"(medians; ratio of medians {med[name] / base:.3f})")
    report.target("augpro_mix_vs_mixkd", "<=", 1.10)
    report.target("augpro_fgsm_vs_mixkd", "<=", 1.60)
    report.target("knn_vs_mixkd", "<=", 1.05)
