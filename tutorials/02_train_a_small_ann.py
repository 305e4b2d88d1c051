# %% [markdown]
# # Step 2 — Train a small ANN
#
# Conversion starts from a trained ReLU network (the *ANN*). The paper (Sec. 4.1) trains
# VGG16 and ResNet20 **without BatchNorm and Dropout, with average pooling instead of max
# pooling**: every layer is then an affine map followed by a ReLU, which is what an
# integrate-and-fire neuron can reproduce (steps 3-4).
#
# `icsnn_np.train.train(TrainConfig(...))` is the whole training loop: SGD with momentum
# 0.9, weight decay 5e-4, a step learning-rate schedule (divide by 5 at milestones), random
# crop + horizontal flip, inputs normalised per channel to mean 0 / std 1. Every layer has a
# hand-written `backward`; the optimiser is twenty lines (`icsnn_np.train.SGD`).
#
# Here we train `vgg_cpu` (6 conv layers, 32-64-128 channels, ~290k parameters) on the
# bundled real CIFAR-10 slice: 1,000 training images. That is far too little data for a good
# model — the point is to watch training work. The model the later steps convert in full
# mode was trained the same way on all 50,000 images (`python -m icsnn_np.train`; its
# training curve is in the checkpoint and is plotted at the end when it is present).
#
# Quick mode: 5 short epochs on 384 images (~15 s). Full mode: 30 epochs on the slice
# (~2-3 minutes on 2 CPU cores).

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from _common import BUNDLED_MODEL, load_slice, result, savefig, setup
from icsnn_np.backend import to_host
from icsnn_np.checkpoint import load_checkpoint, read_checkpoint
from icsnn_np.data import normalize
from icsnn_np.models import build_model
from icsnn_np.train import TrainConfig, evaluate, train

run = setup("Step 2: train a small ANN")
xp = run.xp

# %% [markdown]
# ## The network
#
# Printing a model shows its layers. Conv layers are `(in, out, k=kernel, s=stride,
# p=padding)`; `AvgPool2d(k=2)` halves the image; the classifier is one `Linear` layer.

# %%
print(build_model("vgg_cpu"))
ds = load_slice()

# %% [markdown]
# ## Training
#
# `train` logs one line per epoch (training loss and accuracy, test accuracy on the slice's
# 1,000 test images) and saves two checkpoints: the last epoch and the best test accuracy.
# We keep them in a temporary folder and load the best one back at the end.

# %%
tmp = tempfile.TemporaryDirectory(prefix="icsnn_tutorial02_")     # removed at the end
workdir = Path(tmp.name)
cfg = TrainConfig(dataset="cifar10-slice", model="vgg_cpu",
                  epochs=run.pick(5, 30), batch_size=run.pick(32, 64), lr=0.02,
                  milestones=run.pick((4,), (20, 26)),   # epochs where lr is divided by 5
                  train_limit=run.pick(384, None), backend=run.backend, seed=0,
                  out=str(workdir / "vgg_cpu_slice.npz"))
summary = train(cfg, log=lambda s: print(s, flush=True))
hist = summary["history"]
result("first_epoch_loss", hist[0]["loss"])
result("last_epoch_loss", hist[-1]["loss"])
result("best_test_acc", 100 * summary["best_acc"])

# %% [markdown]
# ## The curves
#
# You should see the training loss fall epoch after epoch and the training accuracy rise.
# Test accuracy rises much more slowly and levels off well below the training accuracy:
# with 1,000 images the network learns these images faster than it learns CIFAR-10
# (over-fitting). The step drops of the learning rate (dotted lines) give small jumps.

# %%
def plot_history(axes, history, label, milestones=()):
    ep = [h["epoch"] for h in history]
    axes[0].plot(ep, [h["loss"] for h in history], "o-", label=label)
    axes[1].plot(ep, [100 * h["train_acc"] for h in history], "o-", label=f"{label}: train")
    axes[1].plot(ep, [100 * h["test_acc"] for h in history], "s--", label=f"{label}: test")
    for m in milestones:
        for a in axes:
            a.axvline(m + 0.5, color="grey", ls=":", lw=1)


has_bundled = BUNDLED_MODEL.is_file()
fig, ax = plt.subplots(2 if has_bundled else 1, 2, figsize=(11, 7 if has_bundled else 3.8),
                       squeeze=False)
plot_history(ax[0], hist, "slice", cfg.milestones or
             [h["epoch"] - 1 for a, h in zip(hist, hist[1:]) if h["lr"] < a["lr"]])
n_img = cfg.train_limit or len(ds.x_train)
ax[0, 0].set_title(f"vgg_cpu on {n_img} images of the slice ({len(hist)} epochs, this run)")
if has_bundled:
    header, _ = read_checkpoint(BUNDLED_MODEL)
    full = header.get("history", [])
    plot_history(ax[1], full, "CIFAR-10",
                 [h["epoch"] - 1 for a, h in zip(full, full[1:]) if h["lr"] < a["lr"]])
    ax[1, 0].set_title("the bundled model: vgg_cpu on all 50,000 images (from its checkpoint)")
    if full:
        result("bundled_model_test_acc", 100 * full[-1]["test_acc"])
for row in ax:
    row[0].set_ylabel("training loss (cross-entropy)")
    row[1].set_ylabel("accuracy (%)")
    for a in row:
        a.set_xlabel("epoch")
        a.legend(fontsize=8)
fig.tight_layout()
savefig(fig, run, "02_training_curves.png")

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
print(f"reloaded {summary['best']}: {100 * acc:.2f}% (trainer said {100 * summary['best_acc']:.2f}%)")
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
savefig(fig, run, "02_predictions.png")
tmp.cleanup()

# %% [markdown]
# Next: `03_if_neuron_and_rate_coding.py` — the spiking neuron that replaces each ReLU.
