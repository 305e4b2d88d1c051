# %% [markdown]
# # Step 9 — The T-level ANN as a reference level, and an ANN trained for it (QCFS)
#
# **After this step you can**
#
# * compute the *T-level ANN* of a converted network (`beyond.quantised.quantised_ann`), say
#   what it is the accuracy *of* (an SNN with no unevenness error, every neuron started at
#   V_th/2) and why methods can cross it (it is a reference level, not a bound);
# * train an ANN whose activation already is the SNN's rounding (QCFS: quantisation, clip,
#   floor, shift, with a trainable threshold λ) and convert it: V_th = λ, v(0) = λ/2;
# * read a comparison of many methods against that reference, pre-runs counted.
#
# Steps 5-8 fought the error term of Eq. 11 with v(0), per layer, channel or image. Take
# the simplest SNN without any unevenness: every IF neuron receives its mean input evenly
# at every step and starts at V_th/2. It emits exactly the ANN's value *rounded to T levels
# of V_th and clipped at V_th* (step 2). Apply that rounding to every ReLU of the ANN and you
# get the **T-level ANN**. Its loss is a **reference level**: what the rounding alone costs
# with one fixed start. It is *not* a floor that no method can get below, and the
# repository's own tables cross it (section 4): on the plain `vgg_cpu` at T = 2 the
# T-level ANN loses 14.20 points, IC-SNN (one v(0) per layer) 12.00; on the QCFS ANN at
# T = 1 the T-level ANN loses 22.00, I-SNN 18.80. Two reasons:
#
# * **more freedom than one rounding.** The T-level ANN rounds every value to the nearest
#   level (offset V_th/2). A data-chosen v(0) per layer (I-SNN, IC-SNN) is another offset,
#   a per-channel current or per-neuron v(0) (SNN Calibration) another again, and a v(0)
#   per image (COS, SRP after their pre-run) looks at the image itself. At 1 or 2 levels
#   round-to-nearest is not the best quantiser of a layer for the network's answer, so
#   these can lose less.
# * **uneven spikes.** In the SNN a neuron's input changes from step to step, so its count
#   is not the rounding of its mean: the unevenness error (SRP's subject) moves a neuron's
#   count by a spike or more, either way. On average it costs accuracy, but nothing makes
#   the SNN's result the T-level ANN's minus something.
#
# Bu et al. (QCFS, ICLR 2022) move the reference instead: they *train* the ANN with the
# rounding in it, the clip-floor-shift activation with L levels and a threshold λ learned per
# layer,
#
#     y = λ clip(floor(x L / λ + 1/2) / L, 0, 1),
#
# so that at T = L the ANN *is* its T-level ANN, and the conversion loses only the
# unevenness. This is beyond the IC-SNN paper, which trains a plain ReLU network (its Sec.
# 4.1.3) and places QCFS among related work (its ref. [14], Sec. 2.3).
#
# The package: `icsnn_np/beyond/qcfs.py` (the activation with its hand-written backward:
# straight through the floor, the exact gradient for λ, as the official code's autograd),
# `python -m icsnn_np.train --activation qcfs --levels L` and the bundled `vgg_cpu_qcfs`.

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import copy
import json

import matplotlib.pyplot as plt
import numpy as np

from _common import (ROOT, binomial_se, finish, get_model, host, load_slice, result, savefig, see,
                     setup, split_data)
from icsnn_np.backend import to_device
from icsnn_np.beyond.qcfs import QCFS, initial_lams, qcfs_layers, with_qcfs
from icsnn_np.beyond.quantised import quantised_ann
from icsnn_np.runs.checkpoints import load_model
from icsnn_np.io.preprocess import augment, batches, normalize
from icsnn_np.neurons import IFNode
from icsnn_np.optim import SGD, train_step
from icsnn_np.runs.engine import training_network
from icsnn_np.runs.evaluate import ConversionConfig, ann_accuracy, calibrate, convert_balanced, snn_accuracy

run = setup("Step 9: the T-level ANN as a reference level, and QCFS", mode=MODE)
xp = run.xp
ds = load_slice()

# %% [markdown]
# ## 1. The IF neuron over L steps is QCFS's activation
#
# Started at v(0) = λ/2 with threshold λ, an IF neuron fed a constant current x for L
# steps fires floor(x L/λ + 1/2) times, clipped to 0 .. L (up to ties, where our neurons fire
# on v > V_th and the floor rounds up). Decoded (spikes x λ / L), that is the QCFS output.

# %%
L_demo, lam = 4, 1.0
x = np.linspace(-0.5, 1.5, 401)[:, None]
qcfs = QCFS(L_demo, lam, dtype=np.float64)
node = IFNode(v_th=lam, v0=lam / 2)
node.reset(len(x), count=True)
for _ in range(L_demo):
    node.forward(x)
decoded = node.spike_count[:, 0] * lam / L_demo
gap = float(np.abs(decoded - qcfs.forward(x)[:, 0]).max())
print(f"IF neuron (v(0) = λ/2, {L_demo} steps) against QCFS (L = {L_demo}): largest difference {gap:.2g}")
result("if_vs_qcfs_max_diff", gap)

# %% [markdown]
# ## 2. The reference level of a plain ReLU network
#
# Convert the plain ANN (threshold balancing at its p), then replace every ReLU by the T-step
# rounding at that node's V_th: `quantised_ann(snn, T)`. Beside it, the SNN from v(0) = V_th/2
# (C-SNN `half`): the same start, but with uneven spikes. At T = 1 there is no unevenness
# (one step, one input), so the two agree up to ties: a check of the definition. At small T
# the T-level ANN is far below the ANN: rounding each layer to 2 or 4 levels at these
# thresholds loses much of what the layers pass on.

# %%
net = get_model(run, ds)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256),
                                   n_test=run.pick(200, 1000, in_class=300))
cfg = ConversionConfig(p=net.p, batch_size=100)
Ts = run.pick([1, 2, 4, 8, 16, 32], [1, 2, 4, 8, 16, 32], in_class=[1, 2, 4, 8])
snn, _ = convert_balanced(net.model, calib, cfg)
ann_plain = ann_accuracy(net.model, x_test, y_test)
floor_plain = {T: ann_accuracy(quantised_ann(snn, T), x_test, y_test) for T in Ts}
half_plain = {}
for T in Ts:
    sim = calibrate(snn, "c-snn", T, calib, ConversionConfig(p=net.p, batch_size=100, comp="half"))
    half_plain[T] = snn_accuracy(snn, x_test, y_test, T, cfg, run=sim)[0]
print(f"plain ANN ({net.name}): {ann_plain:.2f}% on {len(x_test)} test images")
for T in Ts:
    print(f"  T = {T:2d}: T-level ANN {floor_plain[T]:6.2f}%   SNN from v(0) = V_th/2 {half_plain[T]:6.2f}%")
    result(f"plain_floor_T{T}", ann_plain - floor_plain[T])

# %% [markdown]
# ## 3. An ANN trained with the rounding: QCFS
#
# Full mode loads the bundled `vgg_cpu_qcfs` (the bundled `vgg_cpu` fine-tuned with QCFS
# activations on all of CIFAR-10; the README says how its L was chosen). Quick mode
# fine-tunes the tiny network here, on the slice, for a few epochs: each λ starts at its
# layer's 0.999-quantile (`initial_lams`), then SGD trains weights and λ together.
#
# Conversion takes λ as V_th (`convert_balanced` sees the QCFS layers) and starts every
# neuron at λ/2 (C-SNN `half`). At T = L the T-level ANN is the QCFS ANN itself.

# %%
if run.quick:
    L = 4
    qmodel = with_qcfs(copy.deepcopy(net.model), L, initial_lams(net.model, calib))  # a copy
    opt = SGD(qmodel, lr=0.01, momentum=0.9, weight_decay=5e-4)
    trainer, context = training_network(qmodel, "fast")
    rng = np.random.default_rng(0)
    with context:
        for epoch in range(3):
            for idx in batches(len(ds.x_train), 64, rng):
                xb = normalize(augment(ds.x_train[idx], rng), net.mean, net.std, xp)
                train_step(trainer, opt, xb, to_device(ds.y_train[idx], xp))
    qmodel.eval()
    qname = "tiny network, QCFS fine-tuned on the slice"
else:
    qmodel, header = load_model("vgg_cpu_qcfs")
    qmodel.to(xp).eval()
    L = header["levels"]
    qname = f"vgg_cpu_qcfs (L = {L})"
lams = [float(host(m.params["lam"])[0]) for m in qcfs_layers(qmodel)]
qsnn, _ = convert_balanced(qmodel, calib, cfg)
ann_q = ann_accuracy(qmodel, x_test, y_test)
floor_q = {T: ann_accuracy(quantised_ann(qsnn, T), x_test, y_test) for T in Ts}
half_q = {}
for T in Ts:
    sim = calibrate(qsnn, "c-snn", T, calib, ConversionConfig(batch_size=100, comp="half"))
    half_q[T] = snn_accuracy(qsnn, x_test, y_test, T, cfg, run=sim)[0]
print(f"QCFS ANN ({qname}): {ann_q:.2f}%; trained λ per layer: " + ", ".join(f"{v:.3g}" for v in lams))
for T in Ts:
    print(f"  T = {T:2d}: T-level ANN {floor_q[T]:6.2f}%   SNN from v(0) = λ/2 {half_q[T]:6.2f}%")
    result(f"qcfs_floor_T{T}", ann_q - floor_q[T])
    result(f"qcfs_snn_loss_T{T}", ann_q - half_q[T])
result("qcfs_ann_acc", ann_q)
result("plain_ann_acc", ann_plain)

fig, ax = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
for a, (title, ann, floor, half) in zip(ax, [("plain ReLU ANN", ann_plain, floor_plain, half_plain),
                                             (f"QCFS ANN, L = {L}", ann_q, floor_q, half_q)]):
    a.axhline(ann, color="k", ls="--", label=f"ANN {ann:.1f}%")
    a.errorbar(Ts, [floor[T] for T in Ts], yerr=binomial_se([floor[T] for T in Ts], len(x_test)),
               fmt="s-", color="C2", capsize=3, label="T-level ANN (reference: even input, V_th/2)")
    a.errorbar(Ts, [half[T] for T in Ts], yerr=binomial_se([half[T] for T in Ts], len(x_test)),
               fmt="o-", color="C3", capsize=3, label="SNN, v(0) = V_th/2")
    a.set_xscale("log", base=2)
    a.set_xticks(Ts, [str(T) for T in Ts])
    a.set_xlabel("time steps T")
    a.set_title(title)
    a.legend(fontsize=8, loc="lower right")
ax[0].set_ylabel(f"test accuracy (%), {len(x_test)} images")
fig.suptitle("the T-level ANN (every ReLU rounded to T levels of V_th) beside the SNN from V_th/2; "
             "a plain ANN, and a QCFS ANN trained with the rounding")
fig.tight_layout()
savefig(fig, run, "09_t_level_ann.png")

# %% [markdown]
# ## 4. Every method, on both ANNs, against the reference
#
# `python -m icsnn_np.compare` measured every method on the first 2,000 CIFAR-10 test images,
# on the plain `vgg_cpu` and on `vgg_cpu_qcfs` (`results/methods_vgg_cpu.md`,
# `results/methods_vgg_cpu_qcfs.md`, first table: loss in points by counted T). The cell
# below reads those files (nothing is simulated) and draws one panel per family of methods,
# each against the T-level ANN at the same T: the T output levels are what the rounding
# depends on. A pre-run's steps come on top (in the legend); step 8's figure compares at
# equal *total* steps. One accuracy on 2,000 images carries ±0.8 points; two differ beyond
# noise past about 2.2 points.
#
# * **Plain ANN, T = 1**: reference 66.50, and C-SNN `half` 66.50 too (one step has no
#   unevenness); SNN Calibration light 49.20 and advanced 46.65, COS 25.45 (+4 pre-run
#   steps), COS layer by layer 21.75 (+24): per-channel, per-neuron and per-image freedom.
# * **Plain ANN, T = 2**: reference 14.20; IC-SNN 12.00 with one v(0) per layer, SNN
#   Calibration advanced 12.75 and light 14.00, SRP 11.45, COS 8.75 and 7.45.
# * **Plain ANN, T = 4**: reference 4.35; only the pre-run methods get below it: SRP 3.40,
#   COS 3.95, COS layer by layer 4.20. **T = 8**: reference 0.20, every SNN above it (best
#   SNN Calibration advanced, 1.60): what is left is unevenness, not rounding. **T = 16 /
#   32**: reference 1.10 / 0.80, the best SNNs within noise of it (1.10 and 0.50).
# * **QCFS ANN, T = 1**: reference 22.00 = C-SNN `half` 22.00; I-SNN 18.80, SNN Calibration
#   light 15.00 and advanced 15.80, SRP 14.75, COS 11.70 and 8.35. **T = 2**: reference
#   3.50, and no method without a pre-run below it (best 5.75); SRP 3.20, COS 2.60 and
#   2.30 with theirs. **T = 4**: reference 0.70; SRP 0.20, COS 0.35. **T = L = 8**:
#   reference 0.00 (the QCFS ANN itself), C-SNN `half` 0.10.

# %%
FAMILIES = [("one v(0) per layer", ("c-snn", "i-snn", "ic-snn", "ic-snn-fp")),
            ("per channel or neuron (SNN Calibration)", ("snn-calib", "snn-calib-adv")),
            ("per image, after a pre-run", ("cos-layer", "cos", "srp"))]
panels = []
for name in ("methods_vgg_cpu", "methods_vgg_cpu_qcfs"):
    path = ROOT / "results" / f"{name}.json"
    if path.is_file():
        panels.append((name, json.loads(path.read_text())))
crossed = {}
if panels:
    fig, ax = plt.subplots(len(panels), len(FAMILIES), figsize=(15, 4.0 * len(panels) + 1.3), sharex=True,
                           sharey=True, squeeze=False)
    for row, (name, res) in zip(ax, panels):
        n, acc0 = res["n_test"], res["ann_acc"]
        ref = {int(T): acc0 - a for T, a in res["quantised_ann"]["quantile"].items()}
        rT = sorted(ref)
        rows = {r["variant"]: r for r in res["rows"] if r["thresholds"] == "quantile"}
        kind = "QCFS ANN (vgg_cpu_qcfs)" if name.endswith("qcfs") else "plain ReLU ANN (vgg_cpu)"
        for a, (family, variants) in zip(row, FAMILIES):
            a.fill_between(rT, [ref[T] for T in rT], -1.5, color="C2", alpha=0.12,
                           label="below the reference")
            a.plot(rT, [ref[T] for T in rT], "k--", lw=2, marker="D", ms=5,
                   label="T-level ANN (reference)")
            plain = rows["snn"]["T"]
            a.plot(rT, [plain[str(T)]["loss"] for T in rT], color="0.6", lw=1, label="plain SNN")
            members = [v for v in variants if v in rows]
            for k, v in enumerate(members):
                ms = rows[v]["T"]
                Tv = sorted(int(T) for T in ms if int(T) in ref)           # the reference's T
                loss = [ms[str(T)]["loss"] for T in Tv]
                pre = ms[str(Tv[0])].get("prerun", 0)
                dodge = 2.0 ** (0.05 * (k - (len(members) - 1) / 2))      # error bars apart
                a.errorbar(np.array(Tv) * dodge, loss, yerr=binomial_se([acc0 - x for x in loss], n),
                           fmt="o-", ms=4, capsize=2, color=f"C{k}",
                           label=rows[v]["label"] + (f" (+{pre} pre-run)" if pre else ""))
                for T, x in zip(Tv, loss):
                    if T in ref and round(x, 2) < round(ref[T], 2):       # 0.05-point grid
                        crossed.setdefault((name, T), []).append((rows[v]["label"], x))
            a.axhline(0, color="k", lw=0.6)
            a.set_xscale("log", base=2)
            a.set_xticks(rT, [str(T) for T in rT])
            a.set_yscale("symlog", linthresh=1)
            a.set_ylim(-1.5, 100)
            ticks = [-1, -0.5, 0, 0.5, 1, 2, 5, 10, 20, 50, 100]
            a.set_yticks(ticks, [f"{t:g}" for t in ticks])
            a.set_title(f"{kind}, ANN {acc0:.2f}%:\n{family}", fontsize=10)
            a.grid(alpha=0.3)
        row[0].set_ylabel("loss = ANN - SNN (points)\nlinear in [-1, 1], log beyond")
    for a in ax[-1]:                                   # one legend per column, under it
        a.set_xlabel("time steps T counted (output levels)")
        a.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    fig.suptitle(f"every method against the T-level ANN, {panels[0][1]['n_test']:,} test images "
                 "(results/); error bars 1 s.e.; below 0 an SNN beats its own ANN", fontsize=11)
    fig.tight_layout()
    savefig(fig, run, "09_methods_both_anns.png")
    for name, res in panels:
        acc0 = res["ann_acc"]
        for T, a in sorted((int(T), a) for T, a in res["quantised_ann"]["quantile"].items()):
            below = sorted(crossed.get((name, T), []), key=lambda m: m[1])
            print(f"{name} T = {T:2d}: reference {acc0 - a:5.2f}; below it: "
                  + (", ".join(f"{lab} {x:.2f}" for lab, x in below) or "none"))
            result(f"{name}_crossing_T{T}", len(below))

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/09_the_t_level_ann_and_qcfs.py`.
#
# 1. **Derive** the gradient QCFS's λ receives from one activation (straight through the
#    floor): q - x/λ inside the clip, 1 above it, 0 below, with q the rounded value. Check it
#    on x = 0.3, 2.0, -1.0 at λ = 1, L = 4 against `QCFS.backward`.
# 2. **Explain** why the T-level ANN of a QCFS ANN at T = 2L is not the QCFS ANN, and
#    measure how far apart their accuracies are on this network.
# 3. **Measure** what IC-SNN's Alg. 2 adds on the QCFS ANN at T = L: calibrate `ic-snn`
#    with compensation `half` and compare it with C-SNN `half` (λ/2) on the same images,
#    with McNemar's test (`icsnn_np.runs.tables.mcnemar`).
#
# ## What you should see

# %%
see("the IF neuron over L steps from λ/2 computes the QCFS activation (up to ties)", gap <= lam / L_demo)
see("at T = 1 the SNN from V_th/2 is its T-level ANN (one step has no unevenness), both ANNs",
    abs(half_plain[1] - floor_plain[1]) <= 100 / len(x_test) + 1e-9
    and abs(half_q[1] - floor_q[1]) <= 100 / len(x_test) + 1e-9,
    f"{half_plain[1]:.2f}% vs {floor_plain[1]:.2f}%; {half_q[1]:.2f}% vs {floor_q[1]:.2f}%")
see("the plain ANN's T-level reference loses a lot at T = 2 and less at the largest T",
    ann_plain - floor_plain[2] > ann_plain - floor_plain[Ts[-1]],
    f"loss {ann_plain - floor_plain[2]:.1f} at T = 2, {ann_plain - floor_plain[Ts[-1]]:.1f} at T = {Ts[-1]}")
see(f"the QCFS ANN's reference at T = L = {L} is its own accuracy", abs(ann_q - floor_q[L]) < 1e-9,
    f"{floor_q[L]:.2f}% vs {ann_q:.2f}%")
see(f"at T = L the QCFS network's SNN is closer to its ANN than the plain network's is to its own",
    ann_q - half_q[L] < ann_plain - half_plain[L],
    f"{ann_q - half_q[L]:.2f} vs {ann_plain - half_plain[L]:.2f} points")
if panels:
    ic2 = crossed.get(("methods_vgg_cpu", 2), [])
    see("results: the reference is no floor: at T = 2 on the plain ANN IC-SNN, one v(0) per layer, "
        "is below it", any(lab == "IC-SNN" for lab, _ in ic2),
        ", ".join(f"{lab} {x:.2f}" for lab, x in ic2))
    see("results: at T = 1 on both ANNs SNN Calibration (per channel / neuron) is below it",
        all(any(lab.startswith("SNN Calibration") for lab, _ in crossed.get((nm, 1), []))
            for nm, _ in panels))
finish(run)
