"""The demo's experiment: a bundled (or given) network converted and measured, every variant
at every T, on the bundled slice of CIFAR-10 or a dataset on disk.

    res = demo(DemoSetup(T=(32,)), log=print)       # what `python -m icsnn_np.demo` prints

Without any bundled model it first trains a small one on the slice (a few minutes).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..backend import get_xp
from ..io.checkpoint import bundled_models, check_fits_data, resolve_checkpoint
from ..io.data import load_dataset
from ..io.preprocess import normalize
from .checkpoints import load_model
from .evaluate import (ConversionConfig, calibrated_snn, calibration_passes, evaluate_conversion,
                       quantile_for, threshold_rule)
from .outputs import claim
from .progress import tracking
from .protocol import calibration_split, test_indices
from .stats import spike_stats
from .training import TrainConfig, train

DEFAULT_MODEL = "vgg_cpu"
CALIB_SOURCES = ("train", "cifar10-slice")


@dataclass
class DemoSetup:
    """What the demo runs: the network and data, which images, and the conversion (``cfg``;
    its p None: the one stored with the model)."""
    cfg: ConversionConfig = field(default_factory=ConversionConfig)
    checkpoint: str | None = None      # a file or a bundled model's name (None: vgg_cpu)
    model: str = DEFAULT_MODEL         # trained on the spot when no model is bundled
    dataset: str = "cifar10-slice"
    data_dir: str | None = None
    download: bool = False
    calib_from: str = "train"          # or cifar10-slice: calibrate on the slice's training images
    n_test: int = 1000
    test_subset: str = "first"
    backend: str = "numpy"
    workdir: str = "runs"
    train_epochs: int = 30
    stats_variant: str | None = None   # also count spikes, SOPs and energy of this variant
    n_stats: int = 200


def on_the_spot(s: DemoSetup) -> bool:
    return not s.checkpoint and DEFAULT_MODEL not in bundled_models()


def workdir_model(s: DemoSetup) -> Path:
    """Where a model trained on the spot goes (``--workdir``)."""
    return Path(s.workdir) / f"demo_{s.model}_{s.dataset}.npz"


def get_model(s: DemoSetup, xp, ds, log):
    """(model, header, mean, std): the checkpoint (default the bundled vgg_cpu), checked to
    fit ``ds``; without any bundled model, one trained on the slice first."""
    if not on_the_spot(s):
        path = resolve_checkpoint(s.checkpoint or DEFAULT_MODEL)
        model, header = load_model(path)
        mean, std = check_fits_data(header, ds.num_classes, ds.name, str(path))
        log(f"model: {header['arch']} from {path} (trained on {header.get('dataset', '?')}, "
            f"test accuracy there {100 * header.get('test_acc', float('nan')):.2f}%)")
        return model.to(xp), header, mean, std
    with claim(s.workdir, log, "--workdir", Path(s.workdir) / ".demo.lock"):   # one per workdir
        cfg = TrainConfig(dataset=s.dataset, model=s.model, epochs=s.train_epochs, lr=0.02,
                          batch_size=64, seed=s.cfg.seed, backend=s.backend, data_dir=s.data_dir,
                          out=str(workdir_model(s)), force=True).validate()
        log(f"no bundled model: training {s.model} on {s.dataset} for {s.train_epochs} epochs "
            f"first (a few minutes on 2 CPU cores)")
        res = train(cfg, log=log)
    return res["model"], {"arch": s.model, "dataset": s.dataset}, res["mean"], res["std"]


def load_data(s: DemoSetup):
    """(test dataset, calibration dataset): with ``calib_from="cifar10-slice"`` only the test
    file of the dataset is read and the bundled slice's training images calibrate."""
    if s.calib_from == "train" or s.dataset == "cifar10-slice":
        ds = load_dataset(s.dataset, s.data_dir, download=s.download)
        return ds, ds
    if s.dataset != "cifar10":
        raise ValueError(f"--calib-from {s.calib_from} calibrates on CIFAR-10 images: it needs "
                         f"--dataset cifar10, not {s.dataset}")
    ds = load_dataset(s.dataset, s.data_dir, download=s.download, test_only=True)
    return ds, load_dataset(s.calib_from)


def run_stats(model, x_calib, x, cfg, variant, mean, std, log):
    """Spikes, SOPs and energy of ``variant`` at each T of ``cfg`` (per image)."""
    out = {"variant": variant, "per_T": {}}
    n_cal = min(cfg.n_calib, len(x_calib))
    with tracking(sum(T * (len(x) + n_cal * calibration_passes(variant, model)) for T in cfg.T), log,
                  what="spike count"):
        for T in cfg.T:
            log(f"counting spikes and synaptic operations of {variant} at T={T} on {len(x)} images")
            snn, run = calibrated_snn(model, x_calib, variant, T, cfg, mean=mean, std=std)
            out["per_T"][str(T)] = spike_stats(model, snn, x, T, batch_size=cfg.batch_size,
                                               sim=run, **cfg.inputs(mean, std))
    return out


def demo(s: DemoSetup, log=print):
    """Load, convert, measure; returns the results (a JSON-ready dict, ``evaluate_conversion``'s
    with the model, data, images and the threshold rule) and the model, images and settings
    an export needs: (res, context)."""
    xp = get_xp(s.backend)
    if s.checkpoint:
        resolve_checkpoint(s.checkpoint)               # a missing file: said before loading data
    ds, calib_ds = load_data(s)
    model, header, mean, std = get_model(s, xp, ds, log)
    asked, cfg = s.cfg.p, s.cfg
    cfg.p = quantile_for(header, asked)                # a stored p is checked too
    if asked is None and "p" in header:
        log(f"threshold quantile p = {header['p']} (stored with the model: "
            f"{header.get('p_chosen_by', '')})")
    cfg.validate()
    cal, _ = calibration_split(len(calib_ds.x_train), cfg.n_calib, cfg.seed)   # as reproduce does
    idx = test_indices(len(ds.x_test), s.n_test, s.test_subset, cfg.seed)
    images = {"calibration": f"{len(cal)} training images of {calib_ds.name} (seed {cfg.seed})",
              "test": f"{s.test_subset} {len(idx)} test images of {ds.name}"}
    log(f"calibration: {images['calibration']}, {calib_ds.source}; test: {images['test']}, {ds.source}")
    x_calib = normalize(calib_ds.x_train[cal], mean, std, xp)
    x_test, y_test = normalize(ds.x_test[idx], mean, std, xp), ds.y_test[idx]
    t0 = time.perf_counter()
    res = evaluate_conversion(model, x_calib, x_test, y_test, cfg, mean=mean, std=std, log=log)
    if s.stats_variant:
        res["stats"] = run_stats(model, x_calib, x_test[:s.n_stats], cfg, s.stats_variant, mean, std, log)
    res.update(model=header["arch"], dataset=s.dataset, images=images, seconds=round(time.perf_counter() - t0, 1))
    res["config"]["threshold_rule"] = threshold_rule([cfg.threshold_mode], model)
    return res, {"model": model, "header": header, "x_calib": x_calib, "x_test": x_test,
                 "y_test": y_test, "mean": mean, "std": std, "cfg": cfg}
