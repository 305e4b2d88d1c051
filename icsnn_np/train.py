"""Train a ReLU ANN with hand-written SGD: ``python -m icsnn_np.train``.

The paper's recipe (Sec. 4.1.3): SGD, lr 0.1, momentum 0.9, weight decay 5e-4, batch 128,
300 epochs, lr divided by 5 at epochs 70/130/190/240 (scaled proportionally when fewer
epochs are asked for); random crop (pad 4) + horizontal flip; per-channel normalisation to
mean 0 / std 1 with training-set statistics.

    python -m icsnn_np.train --dataset cifar10 --model vgg_cpu --epochs 20 --out runs/vgg_cpu.npz
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .backend import backend_name, get_xp, to_device, to_host, xp_of
from .checkpoint import save_checkpoint
from .data import augment, batches, channel_stats, load_dataset, normalize
from .models import build_model

PAPER_EPOCHS = 300
PAPER_MILESTONES = (70, 130, 190, 240)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf: training stops instead of producing garbage."""


# --------------------------------------------------------------------------- loss
def cross_entropy(logits, labels):
    """Mean softmax cross-entropy and its gradient w.r.t. the logits.

    Numerically stable: the row maximum is subtracted before exponentiating (log-sum-exp).
    logits: (N, K) float, labels: (N,) int  ->  (loss scalar array, dlogits (N, K))
    """
    xp = xp_of(logits)
    N = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logsum = xp.log(xp.exp(z).sum(axis=1, keepdims=True))
    logp = z - logsum                                        # (N, K) log-softmax
    loss = -logp[xp.arange(N), labels].mean()
    grad = xp.exp(logp)
    grad[xp.arange(N), labels] -= 1.0
    grad /= N
    return loss, grad


# --------------------------------------------------------------------------- optimiser
class SGD:
    """SGD with momentum and L2 weight decay, PyTorch semantics.

    g = grad + wd * p;  buf = momentum * buf + g;  p -= lr * buf   (parameters updated in place)
    """

    def __init__(self, model, lr=0.1, momentum=0.9, weight_decay=5e-4):
        self.model, self.lr, self.momentum, self.weight_decay = model, lr, momentum, weight_decay
        self._slots = [(m, k) for _, m, k in model.named_parameters()]
        self._buf = [None] * len(self._slots)

    def step(self):
        for i, (m, k) in enumerate(self._slots):
            p, g = m.params[k], m.grads[k]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                if self._buf[i] is None:
                    self._buf[i] = g.copy()
                else:
                    self._buf[i] *= self.momentum
                    self._buf[i] += g
                g = self._buf[i]
            p -= self.lr * g


def scaled_milestones(epochs: int, milestones=PAPER_MILESTONES, total=PAPER_EPOCHS):
    """The paper's milestones scaled to ``epochs`` (e.g. 30 epochs -> 7, 13, 19, 24)."""
    if epochs >= total:
        return tuple(milestones)
    return tuple(sorted({max(1, round(m * epochs / total)) for m in milestones}))


def lr_at(epoch: int, base_lr: float, milestones, gamma: float = 0.2) -> float:
    """Step schedule: lr = base_lr * gamma^(number of milestones <= epoch); epochs from 0."""
    return base_lr * gamma ** sum(epoch >= m for m in milestones)


# --------------------------------------------------------------------------- loops
@dataclass
class TrainConfig:
    dataset: str = "cifar10"
    model: str = "vgg_cpu"
    epochs: int = 300
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    backend: str = "numpy"
    augment: bool = True
    data_dir: str | None = None
    download: bool = False             # fetch the dataset if missing (needs internet)
    out: str = "runs/model.npz"
    train_limit: int | None = None     # use only the first N training images (tests, smoke runs)
    milestones: tuple = field(default=())  # empty -> the paper's, scaled to `epochs`


def evaluate(model, x_uint8, y, mean, std, xp, batch_size=500):
    """Top-1 accuracy (fraction) of ``model`` on uint8 images, in eval mode."""
    model.eval()
    correct = 0
    for i in range(0, len(x_uint8), batch_size):
        xb = normalize(x_uint8[i:i + batch_size], mean, std, xp)
        pred = model.forward(xb).argmax(axis=1)
        correct += int(to_host((pred == to_device(y[i:i + batch_size], xp)).sum()))  # sync point
    return correct / max(1, len(x_uint8))


def train(cfg: TrainConfig, log=print):
    """Train ``cfg.model`` on ``cfg.dataset``; saves best and last checkpoints. Returns a summary."""
    xp = get_xp(cfg.backend)
    ds = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download)
    x_train, y_train = ds.x_train, ds.y_train
    if cfg.train_limit:
        x_train, y_train = x_train[:cfg.train_limit], y_train[:cfg.train_limit]
    mean, std = channel_stats(x_train)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg.model, num_classes=ds.num_classes, seed=cfg.seed).to(xp)
    opt = SGD(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    milestones = tuple(cfg.milestones) or scaled_milestones(cfg.epochs)
    out = Path(cfg.out)
    best_path = out.with_name(out.stem + "_best" + out.suffix)
    meta = {"dataset": cfg.dataset, "mean": mean.tolist(), "std": std.tolist(),
            "train_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}}
    log(f"training {cfg.model} ({model.num_parameters():,} parameters) on {cfg.dataset} "
        f"({len(x_train)} images), backend {backend_name(xp)}, {cfg.epochs} epochs, "
        f"lr {cfg.lr} /5 at {list(milestones)}")
    best_acc, history = -1.0, []
    for epoch in range(cfg.epochs):
        opt.lr = lr_at(epoch, cfg.lr, milestones)
        model.train()
        t0, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
        nb = math.ceil(len(x_train) / cfg.batch_size)
        for bi, idx in enumerate(batches(len(x_train), cfg.batch_size, rng)):
            xb = x_train[idx]
            if cfg.augment:
                xb = augment(xb, rng)
            xb = normalize(xb, mean, std, xp)
            yb = to_device(y_train[idx], xp)
            model.zero_grad()
            logits = model.forward(xb)
            loss, dlogits = cross_entropy(logits, yb)
            loss = float(to_host(loss))  # sync point: one scalar per batch, to catch divergence
            if not math.isfinite(loss) or loss > 1e4:
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}, batch {bi + 1}: loss = {loss}. "
                    f"Try a lower learning rate (e.g. --lr {cfg.lr / 2:g}).")
            model.backward(dlogits, input_grad=False)             # dL/dx of the data: unused
            opt.step()
            seen += len(idx)
            loss_sum += loss * len(idx)
            correct += int(to_host((logits.argmax(axis=1) == yb).sum()))
            if sys.stderr.isatty() and (bi % 20 == 0 or bi == nb - 1):
                rate = seen / (time.perf_counter() - t0)
                print(f"\r  epoch {epoch + 1} batch {bi + 1}/{nb} loss {loss_sum / seen:.3f} "
                      f"{rate:.0f} img/s", end="", file=sys.stderr, flush=True)
        dt = time.perf_counter() - t0
        test_acc = evaluate(model, ds.x_test, ds.y_test, mean, std, xp)
        rec = {"epoch": epoch + 1, "lr": opt.lr, "loss": loss_sum / seen, "train_acc": correct / seen,
               "test_acc": test_acc, "seconds": dt, "images_per_s": seen / dt}
        history.append(rec)
        if sys.stderr.isatty():
            print("\r", end="", file=sys.stderr)
        log(f"epoch {epoch + 1:3d}/{cfg.epochs}  lr {opt.lr:.4g}  loss {rec['loss']:.4f}  "
            f"train {100 * rec['train_acc']:.2f}%  test {100 * test_acc:.2f}%  "
            f"{rec['images_per_s']:.0f} img/s  {dt:.0f}s")
        m = {**meta, "epoch": epoch + 1, "test_acc": test_acc, "history": history}
        if test_acc > best_acc:
            best_acc = test_acc
            save_checkpoint(best_path, model, cfg.model, ds.num_classes, m)
        save_checkpoint(out, model, cfg.model, ds.num_classes, m)
    log(f"done: best test accuracy {100 * best_acc:.2f}% -> {best_path}; last -> {out}")
    return {"best_acc": best_acc, "history": history, "out": str(out), "best": str(best_path),
            "model": model, "mean": mean, "std": std}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m icsnn_np.train", description=__doc__.split("\n\n")[0])
    d = TrainConfig()
    p.add_argument("--dataset", default=d.dataset, help="cifar10 | cifar100 | cifar10-slice")
    p.add_argument("--model", default=d.model, help="vgg_cpu | vgg16 | resnet20 | vgg_bench")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--backend", default=d.backend, choices=["numpy", "cupy"])
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--data-dir", default=None, help="folder holding the CIFAR files (default $ICSNN_DATA)")
    p.add_argument("--download", action="store_true", help="download the dataset if it is missing")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--milestones", type=int, nargs="*", default=[],
                   help="epochs at which lr is divided by 5 (default: the paper's, scaled)")
    p.add_argument("--out", default=d.out, help="checkpoint path (best is saved as <stem>_best.npz)")
    a = p.parse_args(argv)
    cfg = TrainConfig(**{k: (tuple(v) if k == "milestones" else v) for k, v in vars(a).items()})
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
        p.error("epochs and batch size must be >= 1 and lr > 0")
    try:
        train(cfg, log=lambda s: print(s, flush=True))
    except (TrainingDiverged, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
