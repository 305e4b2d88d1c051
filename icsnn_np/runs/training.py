"""Train a ReLU ANN with hand-written SGD: the loop behind ``python -m icsnn_np.train``.

The paper's recipe (Sec. 4.1.3, optim.py): SGD, lr 0.1, momentum 0.9, weight decay 5e-4,
batch 128, lr divided by 5 at epochs 70/130/190/240 of 300 (scaled to fewer epochs); random
crop (pad 4) + horizontal flip; per-channel normalisation to mean 0 / std 1 with
training-set statistics. A validation split is held out of the training set (``--val-size``
images drawn with ``--val-seed``; both in the header) before any training: after every epoch
the model is scored on it and on the test set and saved (``--out``), and the best one *by
validation accuracy* as ``<stem>_best.npz`` (the test set is scored for reporting only, so no
choice is made on it), with the optimiser state beside it for ``--resume``.

    python -m icsnn_np.train --dataset cifar10 --model vgg_cpu --epochs 20 --out runs/vgg_cpu.npz
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..backend import BACKENDS, backend_name, get_xp, to_device, to_host
from ..checks import check_choice
from .checks import check_count
from ..beyond.qcfs import LAM_INIT, initial_lams, with_qcfs
from ..io.checkpoint import check_fits_data, read_checkpoint, resolve_checkpoint, save_checkpoint
from ..io.data import DATASETS, load_dataset
from ..io.files import check_new_output, check_not_in_use, exclusive, failed_write_note
from ..layers import Linear
from ..models import MODELS, BasicBlock, build_model
from ..optim import SGD, lr_at, scaled_milestones, train_step
from ..io.preprocess import augment, batched, batches, channel_stats, normalize
from .checkpoints import load_model
from .provenance import provenance
from .engine import DEFAULT_ENGINE, ENGINES, training_network
from .interrupt import kept_on_interrupt
from .progress import FIRST_REPORT_S, EVERY_S
from .resume import RESUME_KEYS, best_path_of, resume, resume_path, save_resume  # noqa: F401


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf: training stops instead of producing garbage."""


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
    warmup: int = 0                    # epochs of linear lr warm-up (per batch)
    init: str = "he"                   # he | fixup (BatchNorm-free ResNets: models.fixup_init)
    resume: bool = False               # continue from `out` and its _resume.npz
    force: bool = False                # replace an earlier run's `out` (else refused)
    activation: str = "relu"           # relu | qcfs (beyond/qcfs.py: clip-floor-shift, trainable λ)
    levels: int | None = None          # QCFS quantisation levels L
    init_from: str | None = None       # start from this checkpoint's weights (fine-tuning)
    engine: str = DEFAULT_ENGINE       # fast (icsnn_np.fast) | reference (the teaching layers)
    val_size: int | None = None        # held-out validation images (None: a tenth, at most 5,000)
    val_seed: int = 0                  # draws the validation images (apart from `seed`)

    def validate(self):
        """Refuse bad settings before any work starts: names, counts, rates and the output
        paths (``out``, its ``_best`` and ``_resume`` files: not folders, writable)."""
        check_choice(self.dataset, DATASETS, "dataset")
        check_choice(self.model, MODELS, "model")
        check_choice(self.backend, BACKENDS, "backend")
        check_choice(self.engine, ENGINES, "engine")
        check_choice(self.init, INITS, "init")
        check_choice(self.activation, ACTIVATIONS, "activation")
        if self.activation == "qcfs" and self.levels is None and self.init_from:
            header, _ = read_checkpoint(resolve_checkpoint(self.init_from))   # a QCFS one: its L
            self.levels = header.get("levels") if header.get("activation") == "qcfs" else None
        if (self.activation == "qcfs") != (self.levels is not None):
            raise ValueError("--levels goes with --activation qcfs (the QCFS quantisation levels L), "
                             "and only with it (a QCFS --init-from gives its own L)")
        if self.levels is not None:
            check_count(self.levels, "QCFS levels L")
        check_count(self.epochs, "epochs")
        check_count(self.batch_size, "batch size")
        check_count(self.warmup, "warm-up epochs", minimum=0)
        if self.train_limit is not None:
            check_count(self.train_limit, "train_limit (--train-limit, training images)")
        for m in self.milestones:
            check_count(m, "a milestone epoch")
        if self.val_size is not None:
            check_count(self.val_size, "val_size (--val-size, validation images)")
        check_count(self.val_seed, "val_seed (--val-seed)", minimum=0)
        for name, lo in (("lr", None), ("momentum", 0.0), ("weight_decay", 0.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)
                    and (v > 0 if lo is None else v >= lo) and (name != "momentum" or v < 1)):
                want = "> 0" if lo is None else ("in [0, 1)" if name == "momentum" else ">= 0")
                raise ValueError(f"{name} must be a finite number {want}, got {v!r}")
        out = Path(self.out)
        hint = " (or --resume to continue that run)"
        replace = self.force or self.resume
        check_not_in_use(out)
        check_new_output(out, "--out", replace, hint)
        check_new_output(best_path_of(out), "the best checkpoint", replace, hint)
        check_new_output(resume_path(out), "the resume state", replace, hint)
        if self.init_from:
            check_init_from(self)
        return self


def check_init_from(cfg: TrainConfig):
    """A QCFS checkpoint goes on as QCFS at its own L: trained on as ReLU it would be QCFS
    weights under a ReLU header, and at another L the header's ``levels`` would not be the
    network's (re-quantising is not supported: it needs λ and the weights trained anew)."""
    header, _ = read_checkpoint(resolve_checkpoint(cfg.init_from))
    if header.get("activation", "relu") != "qcfs":
        return
    L = header["levels"]
    if cfg.activation != "qcfs":
        raise ValueError(f"--init-from {cfg.init_from} is a QCFS checkpoint (L = {L}, trained "
                         f"λ): add --activation qcfs --levels {L} to continue it as QCFS")
    if cfg.levels != L:
        raise ValueError(f"--init-from {cfg.init_from} was trained as QCFS at L = {L}: continue "
                         f"it with --levels {L} (re-quantising it to L = {cfg.levels} is not "
                         f"supported: train from its ReLU parent, or from scratch, at that L)")


INITS = ("he", "fixup")
ACTIVATIONS = ("relu", "qcfs")


def evaluate(model, x_uint8, y, mean, std, xp, batch_size=500):
    """Top-1 accuracy (fraction) of ``model`` on uint8 images, in eval mode."""
    model.eval()
    correct = 0
    for i in range(0, len(x_uint8), batch_size):
        xb = normalize(x_uint8[i:i + batch_size], mean, std, xp)
        pred = model.forward(xb).argmax(axis=1)
        correct += int(to_host((pred == to_device(y[i:i + batch_size], xp)).sum()))  # sync point
    return correct / max(1, len(x_uint8))


# --------------------------------------------------------------------------- loop
def train_epoch(net, opt: SGD, x_train, y_train, mean, std, xp, rng, lr_of_batch, augment_=True,
                batch_size=128, progress=None):
    """One epoch of SGD over the shuffled training set; returns (mean loss, train accuracy).

    ``lr_of_batch(i)`` gives the learning rate of batch i; ``progress(i, n, loss)`` is called
    after every batch. Stops with TrainingDiverged when the loss is NaN, inf or explodes.
    """
    net.train()
    seen, loss_sum, correct = 0, 0.0, 0
    nb = math.ceil(len(x_train) / batch_size)
    for bi, idx in enumerate(batches(len(x_train), batch_size, rng)):
        opt.lr = lr_of_batch(bi)
        xb = augment(x_train[idx], rng) if augment_ else x_train[idx]
        xb, yb = normalize(xb, mean, std, xp), to_device(y_train[idx], xp)
        loss, logits = train_step(net, opt, xb, yb)
        loss = float(to_host(loss))        # sync point: one scalar per batch, to catch divergence
        if not math.isfinite(loss) or loss > 1e4:
            raise TrainingDiverged(f"training diverged at batch {bi + 1}: loss = {loss}. "
                                   f"Try a lower learning rate or --warmup.")
        seen += len(idx)
        loss_sum += loss * len(idx)
        correct += int(to_host((logits.argmax(axis=1) == yb).sum()))
        if progress is not None:
            progress(bi, nb, loss_sum / seen)
    return loss_sum / seen, correct / seen


def batch_progress(epoch: int, t0: float, log):
    """Progress within an epoch, with its ETA: on a terminal one line on stderr rewritten in
    place every 20 batches; otherwise (a log file, a pipe) a line to ``log`` after
    FIRST_REPORT_S seconds, then at most every EVERY_S, so a long epoch never runs silent."""
    tty = sys.stderr.isatty()
    due = [t0 + FIRST_REPORT_S]

    def show(bi, nb, loss):
        now = time.perf_counter()
        el = now - t0
        text = f"  epoch {epoch} batch {bi + 1}/{nb} loss {loss:.3f} ETA {el / (bi + 1) * (nb - bi - 1):.0f}s"
        if tty and (bi % 20 == 0 or bi == nb - 1):
            print(f"\r{text} ", end="", file=sys.stderr, flush=True)
        elif not tty and now >= due[0] and bi < nb - 1:
            due[0] = now + EVERY_S
            log(text.strip())
    return show


def train(cfg: TrainConfig, log=print):
    """Train ``cfg.model`` on ``cfg.dataset``; saves best and last checkpoints. Returns a summary.

    The output is held for the run (``<out>.lock``: one run per output). Ctrl-C raises
    ``cli.Interrupted`` saying which complete checkpoint was kept."""
    cfg.validate()
    with exclusive(Path(cfg.out), log):
        return _train(cfg, log)


def _train(cfg: TrainConfig, log):
    xp = get_xp(cfg.backend)
    ds = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download)
    train_idx, val_idx = validation_split(len(ds.x_train), cfg.val_size, cfg.val_seed)
    x_val, y_val = ds.x_train[val_idx], ds.y_train[val_idx]
    if cfg.train_limit is not None:
        train_idx = train_idx[:cfg.train_limit]
    x_train, y_train = ds.x_train[train_idx], ds.y_train[train_idx]
    mean, std = channel_stats(x_train)
    rng = np.random.default_rng(cfg.seed)
    qcfs_already = False
    if cfg.init_from:                           # fine-tuning: its weights and normalisation
        model, header = load_model(cfg.init_from, arch=cfg.model)
        mean, std = (np.asarray(v, np.float32) for v in check_fits_data(
            header, ds.num_classes, cfg.dataset, str(cfg.init_from)))
        qcfs_already = header.get("activation", "relu") == "qcfs"   # its λ and L go on
    else:
        model = build_model(cfg.model, num_classes=ds.num_classes, seed=cfg.seed)
    if cfg.init == "fixup":
        fixup_init(model)
    if cfg.activation == "qcfs" and not qcfs_already:   # λ: the official 8, or the ReLU net's scale
        lam = LAM_INIT if not cfg.init_from else initial_lams(
            model, list(batched(normalize(x_train[:512], mean, std, np), 128)))
        model = with_qcfs(model, cfg.levels, lam)
    model.to(xp)
    net, engine_context = training_network(model, cfg.engine)   # shares model's parameters
    opt = SGD(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    milestones = tuple(cfg.milestones) or scaled_milestones(cfg.epochs)
    out = Path(cfg.out)
    best_path = best_path_of(out)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    validation = {"images": len(val_idx), "seed": cfg.val_seed,
                  "drawn_from": f"the {cfg.dataset} training set, held out of training",
                  "best_chosen_by": "validation accuracy (the test set is scored for reporting only)"}
    meta = {"dataset": cfg.dataset, "mean": mean.tolist(), "std": std.tolist(), "train_config": config,
            "validation": validation, "provenance": provenance(f"train {cfg.model} on {cfg.dataset}", xp),
            **({"activation": "qcfs", "levels": cfg.levels} if cfg.activation == "qcfs" else {})}
    best_acc, history, start = -1.0, [], 0
    if cfg.resume:
        best_acc, history, start = resume(cfg, config, model, opt, rng, out, xp, log)
    log(f"training {cfg.model} ({model.num_parameters():,} parameters) on {cfg.dataset} "
        f"({len(x_train)} images; {len(val_idx)} more held out for validation, seed "
        f"{cfg.val_seed}), backend {backend_name(xp)}, {cfg.engine} engine, "
        f"{cfg.epochs} epochs, lr {cfg.lr} /5 at {list(milestones)}"
        + (f", warm-up {cfg.warmup}" if cfg.warmup else "") + (f", {cfg.init} init" if cfg.init != "he" else ""))
    nb = math.ceil(len(x_train) / cfg.batch_size)
    t_run = time.perf_counter()
    saved = [start]                                    # the last epoch whose checkpoint is complete

    def kept():
        if not saved[0]:
            return "no epoch was complete: nothing was written"
        return (f"kept the last complete checkpoint {out} (epoch {saved[0]} of {cfg.epochs}; the "
                f"best so far is {best_path}); continue with --resume")

    with engine_context, kept_on_interrupt(kept), failed_write_note(kept):   # a full disk says it too
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            try:
                loss, train_acc = train_epoch(
                    net, opt, x_train, y_train, mean, std, xp, rng,
                    lambda bi: lr_with_warmup(epoch, bi, nb, cfg.lr, milestones, cfg.warmup),
                    cfg.augment, cfg.batch_size, batch_progress(epoch + 1, t0, log))
            except TrainingDiverged as e:
                raise TrainingDiverged(f"epoch {epoch + 1}: {e} ({kept()})") from None
            dt = time.perf_counter() - t0
            val_acc = evaluate(net, x_val, y_val, mean, std, xp)
            test_acc = evaluate(net, ds.x_test, ds.y_test, mean, std, xp)   # reported, never chosen on
            history.append({"epoch": epoch + 1, "lr": opt.lr, "loss": loss, "train_acc": train_acc,
                            "val_acc": val_acc, "test_acc": test_acc, "seconds": dt,
                            "images_per_s": len(x_train) / dt})
            eta = (time.perf_counter() - t_run) / (epoch + 1 - start) * (cfg.epochs - epoch - 1)
            if sys.stderr.isatty():
                print("\r", end="", file=sys.stderr)
            log(f"epoch {epoch + 1:3d}/{cfg.epochs}  lr {opt.lr:.4g}  loss {loss:.4f}  "
                f"train {100 * train_acc:.2f}%  val {100 * val_acc:.2f}%  test {100 * test_acc:.2f}%  "
                f"{len(x_train) / dt:.0f} img/s  {dt:.0f}s  ETA {eta / 60:.0f} min")
            m = {**meta, "epoch": epoch + 1, "val_acc": val_acc, "test_acc": test_acc,
                 "history": history}
            if val_acc > best_acc:
                best_acc = val_acc
                save_checkpoint(best_path, model, cfg.model, ds.num_classes, m)
            save_checkpoint(out, model, cfg.model, ds.num_classes, m)
            save_resume(resume_path(out), opt, rng, {"epoch": epoch + 1, "best_acc": best_acc,
                                                     "history": history, "train_config": config})
            saved[0] = epoch + 1
    best = max(history, key=lambda h: h["val_acc"])     # the first of equals, as saved
    log(f"done: best validation accuracy {100 * best_acc:.2f}% (epoch {best['epoch']}, test "
        f"{100 * best['test_acc']:.2f}%) -> {best_path}; last -> {out}")
    # best_acc: the test accuracy of the checkpoint chosen on validation (reported, not chosen on)
    return {"best_acc": best["test_acc"], "best_epoch": best["epoch"], "best_val_acc": best_acc,
            "history": history, "out": str(out), "best": str(best_path),
            "model": model, "mean": mean, "std": std}


def validation_split(n: int, size: int | None, seed: int):
    """(training indices, validation indices) of n training images: ``size`` of them (None:
    a tenth, at most 5,000) drawn with ``seed`` and held out; both in ascending order, so
    ``--train-limit N`` keeps the first N of the rest."""
    size = min(5000, max(1, n // 10)) if size is None else size
    if size >= n:
        raise ValueError(f"--val-size {size} leaves no training image (the training set has {n})")
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).permutation(n)[:size]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def fixup_init(model, m: int = 2):
    """Fixup-style initialisation of a BatchNorm-free ResNet, in place (Zhang, Dauphin & Ma,
    "Fixup initialization: residual learning without normalization", ICLR 2019, Sec. 3).

    Without BatchNorm every residual branch adds its variance to the signal, so at He
    initialisation the output of ResNet-20 grows with depth and training diverges (measured:
    float32 overflow in the first steps at lr 0.05). Fixup's rules 1-2: the last conv of each
    branch starts at zero (every block is the identity, plus its shortcut, at the start), the
    other ``m - 1`` convs of a branch are scaled by L^(-1/(2m-2)) (L = number of residual
    blocks), and the classification layer starts at zero. Fixup's scalar multipliers and
    biases (rule 3) are left out: our convs have per-channel biases. Returns the model.
    """
    blocks = [mod for _, mod in model.named_modules() if isinstance(mod, BasicBlock)]
    if not blocks:
        raise ValueError("fixup_init needs a residual network (no BasicBlock found)")
    scale = len(blocks) ** (-1.0 / (2 * m - 2))
    for b in blocks:
        b.children["conv1"].params["weight"] *= scale
        b.children["conv2"].params["weight"][...] = 0
    last = [mod for _, mod in model.named_modules() if isinstance(mod, Linear)][-1]
    for k in last.params:
        last.params[k][...] = 0
    return model


def lr_with_warmup(epoch: int, batch: int, batches_per_epoch: int, base_lr: float, milestones,
                   warmup: int = 0) -> float:
    """The step schedule, ramped up linearly batch by batch over the first ``warmup`` epochs
    (Goyal et al., "Accurate, large minibatch SGD", 2017, Sec. 2.2)."""
    lr = lr_at(epoch, base_lr, milestones)
    if epoch < warmup:
        lr *= (epoch * batches_per_epoch + batch + 1) / (warmup * batches_per_epoch)
    return lr
