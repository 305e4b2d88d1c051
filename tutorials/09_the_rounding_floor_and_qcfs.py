# %% [markdown]
# # Step 9 — The rounding floor, and an ANN trained for it (QCFS)
#
# **After this step you can**
#
# * compute the *T-level ANN* of a converted network (`beyond.quantised.quantised_ann`) and
#   say why no choice of v(0) per layer or channel takes a network below its loss;
# * train an ANN whose activation already is the SNN's rounding (QCFS: quantisation, clip,
#   floor, shift, with a trainable threshold λ) and convert it: V_th = λ, v(0) = λ/2;
# * read a comparison of methods at equal *total* steps, pre-runs counted.
#
# Steps 5-8 fought the error term of Eq. 11 with v(0), per layer, channel or image. Even a
# perfect fight leaves something: an IF neuron that receives its mean input evenly at every
# step, started at V_th/2, emits exactly the ANN's value *rounded to T levels of V_th and
# clipped at V_th* (step 2). Apply that rounding to every ReLU of the ANN and you get the
# **T-level ANN**: what the SNN computes without any unevenness. Its loss is a floor for
# every method that leaves the ANN and the thresholds alone.
#
# Bu et al. (QCFS, ICLR 2022) move the floor instead: they *train* the ANN with the rounding
# in it, the clip-floor-shift activation with L levels and a threshold λ learned per layer,
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
import copy
import json

import matplotlib.pyplot as plt
import numpy as np

from _common import (ROOT, binomial_se, finish, get_model, host, load_slice, result, savefig, see,
                     setup, split_data)
from icsnn_np.backend import to_device
from icsnn_np.beyond.qcfs import QCFS, initial_lams, qcfs_layers, with_qcfs
from icsnn_np.beyond.quantised import quantised_ann
from icsnn_np.io.checkpoint import load_checkpoint, resolve_checkpoint
from icsnn_np.io.preprocess import augment, batches, normalize
from icsnn_np.neurons import IFNode
from icsnn_np.optim import SGD, train_step
from icsnn_np.runs.engine import training_network
from icsnn_np.runs.evaluate import ConversionConfig, ann_accuracy, calibrate, convert_balanced, snn_accuracy

run = setup("Step 9: the rounding floor, and an ANN trained for it (QCFS)")
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
# ## 2. The floor of a plain ReLU network
#
# Convert the plain ANN (threshold balancing at its p), then replace every ReLU by the T-step
# rounding at that node's V_th: `quantised_ann(snn, T)`. Its accuracy against T is the
# ceiling for every v(0) method on these thresholds. At small T it is far below the ANN:
# rounding each layer to 2 or 4 levels loses information that no start can restore.

# %%
net = get_model(run, ds)
calib, x_test, y_test = split_data(run, ds, net, n_calib=run.pick(64, 256),
                                   n_test=run.pick(200, 1000, in_class=300))
cfg = ConversionConfig(p=net.p, batch_size=100)
Ts = run.pick([1, 2, 4, 8, 16, 32], [1, 2, 4, 8, 16, 32], in_class=[2, 4, 8])
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
    qmodel, header = load_checkpoint(resolve_checkpoint("vgg_cpu_qcfs"))
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
               fmt="s-", color="C2", capsize=3, label="T-level ANN (no unevenness)")
    a.errorbar(Ts, [half[T] for T in Ts], yerr=binomial_se([half[T] for T in Ts], len(x_test)),
               fmt="o-", color="C3", capsize=3, label="SNN, v(0) = V_th/2")
    a.set_xscale("log", base=2)
    a.set_xticks(Ts, [str(T) for T in Ts])
    a.set_xlabel("time steps T")
    a.set_title(title)
    a.legend(fontsize=8, loc="lower right")
ax[0].set_ylabel(f"test accuracy (%), {len(x_test)} images")
fig.suptitle("the rounding floor: a plain ANN rounded to T levels, and a QCFS ANN trained with it")
fig.tight_layout()
savefig(fig, run, "09_rounding_floor.png")

# %% [markdown]
# ## 4. Every method, on both ANNs, at equal total steps
#
# `python -m icsnn_np.compare` measured every method on 2,000 test images of CIFAR-10, on
# the plain `vgg_cpu` and on `vgg_cpu_qcfs` (`results/methods_vgg_cpu.md`,
# `results/methods_vgg_cpu_qcfs.md`). The x axis is the *total* number of steps an image
# needs: a pre-run costs its steps (COS and SRP rho, COS layer by layer L rho). Below, read
# from those files (not recomputed here).

# %%
panels = []
for name in ("methods_vgg_cpu", "methods_vgg_cpu_qcfs"):
    path = ROOT / "results" / f"{name}.json"
    if path.is_file():
        panels.append((name, json.loads(path.read_text())))
if panels:
    fig, ax = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.6), sharey=True, squeeze=False)
    for a, (name, res) in zip(ax[0], panels):
        for k, r in enumerate(r for r in res["rows"] if r["thresholds"] == "quantile"):
            ms = sorted(r["T"].values(), key=lambda m: m["steps"])
            a.plot([m["steps"] for m in ms], [m["loss"] for m in ms], "o-", ms=4,
                   color=plt.cm.tab10(k % 10), label=r["label"])
        ref = res.get("quantised_ann", {}).get("quantile", {})
        a.plot(sorted(map(int, ref)), [res["ann_acc"] - ref[str(T)] for T in sorted(map(int, ref))],
               "k:", lw=2, label="T-level ANN (the floor)")
        a.axhline(0, color="k", lw=0.8)
        a.set_xscale("log", base=2)
        a.set_yscale("symlog", linthresh=1)
        a.set_xlabel("total time steps per image (pre-run + T)")
        kind = "QCFS ANN, vgg_cpu_qcfs" if name.endswith("qcfs") else "plain ReLU ANN, vgg_cpu"
        a.set_title(f"{kind}: ANN {res['ann_acc']:.2f}%, {res['n_test']} images")
        a.grid(alpha=0.3)
    ax[0][0].set_ylabel("loss = ANN - SNN (points)")
    ax[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    savefig(fig, run, "09_methods_both_anns.png")
    for name, res in panels:
        best = {}
        for r in res["rows"]:
            for m in r["T"].values():
                if r["thresholds"] == "quantile" and m["steps"] in (4, 8):
                    best[m["steps"]] = min(best.get(m["steps"], 99.0), m["loss"])
        print(f"{name}: best loss at 4 total steps {best.get(4)}, at 8 {best.get(8)}")
        for S, v in best.items():
            result(f"{name}_best_loss_S{S}", v)

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/09_the_rounding_floor_and_qcfs.py`.
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
see("the plain ANN's rounding floor is large at T = 2 and shrinks with T",
    ann_plain - floor_plain[2] > ann_plain - floor_plain[Ts[-1]],
    f"loss {ann_plain - floor_plain[2]:.1f} at T = 2, {ann_plain - floor_plain[Ts[-1]]:.1f} at T = {Ts[-1]}")
see(f"the QCFS ANN's floor at T = L = {L} is its own accuracy", abs(ann_q - floor_q[L]) < 1e-9,
    f"{floor_q[L]:.2f}% vs {ann_q:.2f}%")
see(f"at T = L the QCFS network's SNN is closer to its ANN than the plain network's is to its own",
    ann_q - half_q[L] < ann_plain - half_plain[L],
    f"{ann_q - half_q[L]:.2f} vs {ann_plain - half_plain[L]:.2f} points")
finish(run)
