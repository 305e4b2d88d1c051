# %% [markdown]
# # Step 1 — Train a small ANN
#
# **After this step you can**
#
# * say why the paper's ANN has no BatchNorm, no Dropout and average instead of max pooling;
# * train a network with `icsnn_np.runs.training.train(TrainConfig(...))` and read its training curves;
# * save a model as a checkpoint and load it back, bit for bit.
#
# Conversion starts from a trained ReLU network (the *ANN*). The paper (Sec. 4.1.1) trains
# VGG16 and ResNet20 **without BatchNorm and Dropout, with average pooling instead of max
# pooling**: every layer is then an affine map followed by a ReLU, which is what an
# integrate-and-fire neuron can reproduce (steps 2-4), and average pooling is linear, so it
# commutes with averaging over time (exercise 2).
#
# `train(TrainConfig(...))` is the whole training loop: SGD with momentum 0.9, weight decay
# 5e-4, a step learning-rate schedule (divide by 5 at milestones), random crop + horizontal
# flip, inputs normalised per channel to mean 0 / std 1 (the paper's recipe, Sec. 4.1.2-4.1.3).
# Every layer has a hand-written `backward` (`icsnn_np/layers.py`); the optimiser is
# `icsnn_np.optim.SGD`.
#
# Here we train `vgg_cpu` (6 conv layers, 32-64-128 channels) on the bundled real CIFAR-10
# slice: 1,000 training images. That is far too little data for a good model; the point is
# to watch training work. The model the later steps convert was trained the same way on all
# 50,000 images (`python -m icsnn_np.train`; the bundled checkpoint is the best epoch, 17,
# with 85.20 % on the 10,000 test images); its training curve is stored in the checkpoint
# and plotted below.
#
# **Not the paper's schedule.** The paper trains 300 epochs at lr 0.1, batch 128, dividing
# lr by 5 at epochs 70/130/190/240 (Sec. 4.1.3). To fit a CPU the bundled model trained 18
# epochs at lr 0.05, batch 128 (milestones 9/13/16), and this step trains at lr 0.02, batch
# 64: 2 epochs on 256 images (quick mode, a smoke test), 8 epochs on the 1,000 images (class
# mode, under a minute), 15 epochs (full mode). Training steps through the fast engine's twins
# of the layers (`TrainConfig.engine`, "fast" by default; the same functions, tested equal).

# %%
MODE = "full"   # "quick": seconds, a tiny model; "class": about a minute; "full": minutes, all
import os, sys  # noqa: E401,E402 - _common.py's folder: the repository root or tutorials/
sys.path.insert(0, "tutorials" if os.path.isdir("tutorials") else ".")
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from _common import BUNDLED_MODEL, binomial_se, finish, load_slice, result, savefig, see, setup
from icsnn_np.backend import to_host
from icsnn_np.io.checkpoint import load_checkpoint, read_checkpoint
from icsnn_np.models import build_model
from icsnn_np.io.preprocess import normalize
from icsnn_np.runs.training import TrainConfig, evaluate, train

run = setup("Step 1: train a small ANN", mode=MODE)
xp = run.xp

# %% [markdown]
# ## The network
#
# Printing a model shows its layers. Conv layers are `(in, out, k=kernel, s=stride,
# p=padding)`; `AvgPool2d(k=2)` halves the image; the classifier is one `Linear` layer.

# %%
arch = build_model("vgg_cpu")
print(arch)
n_params = arch.num_parameters()
print(f"{n_params:,} parameters")
result("vgg_cpu_parameters", n_params)
ds = load_slice()

# %% [markdown]
# ## Training
#
# `train` logs one line per epoch (training loss and accuracy, test accuracy on the slice's
# 1,000 test images) and saves two checkpoints: the last epoch and the best test accuracy.
# We keep them in a temporary folder and load the best one back at the end.

# %%
tmp = tempfile.TemporaryDirectory(prefix="icsnn_tutorial01_")     # removed at the end
workdir = Path(tmp.name)
cfg = TrainConfig(dataset="cifar10-slice", model="vgg_cpu",
                  epochs=run.pick(2, 15, in_class=8), batch_size=run.pick(32, 64), lr=0.02,
                  milestones=run.pick((1,), (10, 13), in_class=(5, 7)),   # lr divided by 5 there
                  train_limit=run.pick(256, None), backend=run.backend, seed=0,
                  out=str(workdir / "vgg_cpu_slice.npz"))
# the log names the checkpoint files; print their folder as <tmp> (no machine path in a notebook)
summary = train(cfg, log=lambda s: print(s.replace(str(workdir), "<tmp>"), flush=True))
hist = summary["history"]
result("first_epoch_loss", hist[0]["loss"])
result("last_epoch_loss", hist[-1]["loss"])
result("last_train_acc", 100 * hist[-1]["train_acc"])
result("best_test_acc", 100 * summary["best_acc"])

# %% [markdown]
# ## The curves
#
# You should see the training loss fall epoch after epoch and both accuracies rise. Do not
# read much into the gap between the training and the test curve here: the training
# accuracy is taken on augmented batches *during* the epoch, while the weights still change,
# the test accuracy on 1,000 clean images *after* it, with a standard error of about 1.5
# points; in early epochs test can lie above train. Over-fitting would show as a gap that
# keeps growing over many epochs while the test accuracy stalls; a run this short cannot
# show it. The drops of the learning rate (dotted lines) give small jumps. The lower row is
# the bundled model on all of CIFAR-10: it trained 18 epochs, but its checkpoint is the best
# one, epoch 17, and keeps the history up to that epoch, so the row shows 17.

# %%
def plot_history(axes, history, label):
    ep = [h["epoch"] for h in history]
    axes[0].plot(ep, [h["loss"] for h in history], "o-", label=label)
    axes[1].plot(ep, [100 * h["train_acc"] for h in history], "o-", label=f"{label}: train")
    axes[1].plot(ep, [100 * h["test_acc"] for h in history], "s--", label=f"{label}: test")
    for a, h in zip(history, history[1:]):             # a learning-rate drop between epochs
        if h["lr"] < a["lr"]:
            for ax_ in axes:
                ax_.axvline(h["epoch"] - 0.5, color="grey", ls=":", lw=1)


bundled = read_checkpoint(BUNDLED_MODEL)[0] if BUNDLED_MODEL.is_file() else {}
full = bundled.get("history", [])
fig, ax = plt.subplots(2 if full else 1, 2, figsize=(11, 7 if full else 3.8), squeeze=False)
plot_history(ax[0], hist, "slice")
n_img = cfg.train_limit or len(ds.x_train)
ax[0, 0].set_title(f"vgg_cpu on {n_img} images of the slice ({len(hist)} epochs, this run)")
if full:
    plot_history(ax[1], full, "CIFAR-10")
    trained = bundled.get("train_config", {}).get("epochs", "?")
    ax[1, 0].set_title(f"bundled vgg_cpu, all 50,000 images: epochs 1-{len(full)} of {trained} "
                       "(its checkpoint is the best)", fontsize=10)
    result("bundled_model_test_acc", 100 * full[-1]["test_acc"])
for row in ax:
    row[0].set_ylabel("training loss (cross-entropy)")
    row[1].set_ylabel("accuracy (%)")
    for a in row:
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        a.legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "01_training_curves.png")

# %% [markdown]
# ## Saving and loading
#
# A checkpoint is one `.npz` file: the weights under PyTorch-style names plus a JSON header
# (architecture, normalisation mean/std, accuracy, training history). `load_checkpoint`
# rebuilds the model from the header alone. The reloaded model must score exactly what the
# trainer reported.

# %%
model, header = load_checkpoint(summary["best"])
model.to(xp)
acc = evaluate(model, ds.x_test, ds.y_test, header["mean"], header["std"], xp)
print(f"reloaded {Path(summary['best']).name}: {100 * acc:.2f}% "
      f"(trainer said {100 * summary['best_acc']:.2f}%)")
result("reloaded_test_acc", 100 * acc)

# %% [markdown]
# ## What the network says
#
# Twelve test images with the predicted class (green: right, red: wrong).

# %%
x = normalize(ds.x_test[:12], header["mean"], header["std"], xp)
pred = to_host(model.eval().forward(x).argmax(axis=1))      # device -> host: sync point
fig, ax = plt.subplots(2, 6, figsize=(12, 4.6))
for i, a in enumerate(ax.flat):
    a.imshow(ds.x_test[i].transpose(1, 2, 0))
    ok = pred[i] == ds.y_test[i]
    a.set_title(f"{ds.classes[pred[i]]}" + ("" if ok else f"\n(is {ds.classes[ds.y_test[i]]})"),
                color="green" if ok else "red", fontsize=9)
    a.axis("off")
fig.tight_layout()
savefig(fig, run, "01_predictions.png")
tmp.cleanup()

# %% [markdown]
# ## Exercises
#
# Solutions: `solutions/01_train_a_small_ann.py`.
#
# 1. **Derive** the number of parameters of `vgg_cpu` by hand from the printed layers (a
#    3x3 conv from C to O channels has 9 C O weights and O biases) and compare with the
#    printed count.
# 2. **Predict**: two neurons fire on alternate steps (rates 0.5 and 0.5). What rate does
#    *max* pooling of their spike trains give, and what does *average* pooling give? Which
#    one equals the pooling of the rates, i.e. what the ANN computes?
# 3. **Predict** the per-channel mean and standard deviation of the normalised training
#    images, then check with `normalize` and `channel_stats`.
#
# ## What you should see

# %%
see("the training loss falls", hist[-1]["loss"] < hist[0]["loss"],
    f"{hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}")
see("the reloaded checkpoint scores what the trainer reported",
    abs(100 * acc - 100 * summary["best_acc"]) < 1e-9, f"{100 * acc:.2f}%")
if not run.quick:
    n_se = 100 * (summary["best_acc"] - 0.1) / binomial_se(100 * summary["best_acc"], len(ds.x_test))
    see("the trained network is far above chance (10 %) on the 1,000 test images",
        n_se > 5, f"best {100 * summary['best_acc']:.1f}%, {n_se:.0f} standard errors above 10 %")
if full:
    see("on all of CIFAR-10 train and test accuracy stay within a few points",
        abs(full[-1]["train_acc"] - full[-1]["test_acc"]) < 0.05,
        f"{100 * full[-1]['train_acc']:.1f}% vs {100 * full[-1]['test_acc']:.1f}%")
finish(run)

# %% [markdown]
# Next: `02_if_neuron.py`, the spiking neuron that replaces each ReLU.
