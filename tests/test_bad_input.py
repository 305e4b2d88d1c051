"""Bad input, case by case (issue 14): no silent wrong answers, no tracebacks, no hangs.

Two tables hold every case:

* ``CLI``: (case, command, arguments, exit code, part of the message). Each command's
  ``main(argv)`` runs in-process; the test checks the exit code (2 for bad input, 130 for
  Ctrl-C, simulated by a function patched to raise KeyboardInterrupt), exactly one line
  on stderr starting with ``error:`` (the only line, when the argument is refused before
  any work starts) and no traceback.
* ``API``: (case, call, exception type, part of the message) through the Python API: NaN
  and inf where values enter, thresholds <= 0, empty batches, raw integer images,
  checkpoints that do not fit the data, simulations too large for memory.

Then what the issue asks besides errors: a flat ``nn.Sequential`` state_dict imports by
order, the import guide's code runs as written, demo and reproduce draw the same images
for the same flags, long runs print an ETA, and the memory estimate matches a measured
peak. Everything runs on the bundled slice, tiny sizes: seconds in all.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
import tarfile
import tracemalloc
import types
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest

from helpers import load_script, run_sim

from icsnn_np.cli import compare, demo, reproduce
from icsnn_np.cli import train as train_cli
from icsnn_np.runs import progress, protocol, resources
from icsnn_np.runs import training as train_mod
from icsnn_np.bench import __main__ as bench_cli
from icsnn_np.io.checkpoint import (CheckpointError, check_fits_data, load_checkpoint,
                                 read_checkpoint, resolve_checkpoint, save_checkpoint)
from icsnn_np.checks import MAX_T, check_T
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.io.data import default_data_dir, load_dataset
from icsnn_np.io.files import atomic_write_all, exclusive
from icsnn_np.runs.evaluate import (ConversionConfig, ann_accuracy, calibrated_snn, evaluate_conversion,
                                    snn_accuracy)
from icsnn_np.runs.partial import Partial
from icsnn_np.io.imports import import_state_dict, match_state_dict
from icsnn_np.init_mem import alg2_data_init
from icsnn_np.layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from icsnn_np.models import build_model
from icsnn_np.io.batchnorm import build_any
from icsnn_np.module import Sequential
from icsnn_np.io.preprocess import channel_stats, normalize
from icsnn_np.runs.protocol import calibration_split
from icsnn_np.runs.resources import SimulationTooLarge, check_memory, simulation_bytes
from icsnn_np.simulate import simulate
from icsnn_np.runs.stats import spike_stats
from icsnn_np.runs.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


build_slice, bundle_model = load_script("build_slice"), load_script("bundle_model")
depth_table, merge_results = load_script("depth_table"), load_script("merge_results")
gpu_check = load_script("gpu_check")


# --------------------------------------------------------------------------- files
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Checkpoints good and bad (an untrained vgg_cpu with the slice's normalisation) and
    other things a user may name: a folder, random bytes, a truncated archive, a .npy."""
    d = tmp_path_factory.mktemp("bad_input")
    ds = load_dataset("cifar10-slice")
    mean, std = (a.tolist() for a in channel_stats(ds.x_train))
    model = build_model("vgg_cpu", seed=3)
    good = {"mean": mean, "std": std, "dataset": "cifar10-slice", "test_acc": 0.1}
    f = {"dir": d, "folder": d / "a_folder", "missing": d / "missing.npz"}
    f["folder"].mkdir()
    for name, meta, classes in [
            ("ckpt", good, 10),
            ("ck255", dict(good, mean=[m * 255 for m in mean], std=[s * 255 for s in std]), 10),
            ("std0", dict(good, std=[0.0, std[1], std[2]]), 10),
            ("stdnan", dict(good, std=[NAN, std[1], std[2]]), 10),
            ("nomean", {"dataset": "cifar10-slice"}, 10),
            ("mean2", dict(good, mean=mean[:2], std=std[:2]), 10),
            ("p2", dict(good, p=2.0), 10),
            ("c100", good, 100)]:
        net = model if classes == 10 else build_model("vgg_cpu", num_classes=100, seed=3)
        f[name] = save_checkpoint(d / f"{name}.npz", net, "vgg_cpu", classes, meta)
    nan_model = build_model("vgg_cpu", seed=3)
    nan_model.children["features"].children["0"].params["weight"][0, 0, 0, 0] = NAN
    f["nanw"] = save_checkpoint(d / "nanw.npz", nan_model, "vgg_cpu", 10, good)
    f["random"] = d / "random.npz"
    f["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    f["truncated"] = d / "truncated.npz"
    f["truncated"].write_bytes(f["ckpt"].read_bytes()[:5000])
    f["empty"] = d / "empty.npz"
    f["empty"].write_bytes(b"")
    f["npy"] = d / "array.npy"
    np.save(f["npy"], np.zeros(3))
    f["statedict"] = d / "state_dict.npz"
    np.savez(f["statedict"], **{"0.weight": np.zeros((2, 3, 3, 3), np.float32)})
    f["afile"] = d / "a_file.txt"
    f["afile"].write_text("x")
    f["stem"] = d / "res"                     # reproduce --out res writes res.json: a folder here
    (d / "res.json").mkdir()
    # checkpoints whose header or tensors break the schema (written raw, past save_checkpoint)
    sd = {k: np.asarray(v) for k, v in model.state_dict().items()}
    head = {"format": "icsnn-np-checkpoint", "version": 1, "arch": "vgg_cpu", "num_classes": 10, **good}
    for name, h, change in [
            ("int8", head, {"features.0.weight": sd["features.0.weight"].astype(np.int8)}),
            ("bool", head, {"features.0.bias": sd["features.0.bias"] > 0}),
            ("hlist", [1, 2], {}),
            ("archfoo", dict(head, arch="foo"), {}),
            ("ncstr", dict(head, num_classes="10"), {}),
            ("nc0", dict(head, num_classes=0), {}),
            ("meanstr", dict(head, mean="abc"), {}),
            ("mean4", dict(head, mean=[0.5] * 4, std=[0.2] * 4), {}),
            ("pstr", dict(head, p="x"), {}),
            ("actfoo", dict(head, activation="foo"), {}),
            ("qcfsnolevels", dict(head, activation="qcfs"), {}),
            ("versionstr", dict(head, version="x"), {}),
            ("big", head, {"features.0.weight": sd["features.0.weight"] * 0 + 1e5})]:
        arrays = dict(sd, **change, __meta__=np.frombuffer(json.dumps(h).encode(), np.uint8))
        np.savez(d / f"{name}.npz", **arrays)
        f[name] = d / f"{name}.npz"
    # reproduction results: the same checkpoint name, other content (SHA-256)
    for name, sha in (("resA", "a" * 64), ("resB", "b" * 64)):
        f[name] = _result(d / f"{name}.json", sha)
    for name, text in (("emptyjson", ""), ("objjson", "{}"), ("listjson", "[1, 2]"),
                       ("benchjson", json.dumps({"snn": {"ours_rate": 1.0}}))):
        f[name] = d / f"{name}.json"
        f[name].write_text(text)
    f["c10bin"], f["c10py"], f["c10short"] = _repacked_archives(d)
    return f


def _result(path, sha, name="resnet20", n=8):
    """A minimal reproduction result: the SNN row at T = 8, made with checkpoint ``name``."""
    c = np.arange(n) % 2 == 0
    row = {"label": "SNN", "variant": "snn", "setting": "", "p": 0.99, "thresholds": "layer",
           "block": "node", "reading": "remainder", "comp": "literal", "granularity": "layer",
           "T": {"8": {"acc": 50.0, "loss": 40.0, "correct": np.packbits(c).tobytes().hex()}}}
    settings = {"model": "resnet20", "checkpoint": name, "images": f"the first {n} images",
                "n_calib": 8, "seed": 0, "coding": "direct", "p": "0.99", "thresholds": "layer",
                "default reading": "remainder", "default granularity": "layer",
                "default compensation": "literal", "block treatment": "node", "engine": "fast"}
    path.write_text(json.dumps({"ann_acc": 90.0, "n_test": n, "n_calib": 8, "rows": [row],
                                "arch": "resnet20", "settings": settings, "command": path.stem,
                                "seconds": 1.0, "checkpoint_sha256": sha}))
    return path


def _tar(path, members: dict):
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _repacked_archives(d):
    """Folders holding a repacked CIFAR-10 archive of each format (not the official archive
    bytes): small training batches and a test batch of the official size whose content is
    not the official one. Binary: the real test_batch.bin with 5 labels changed where
    $ICSNN_DATA has it, else zeros; python: zeros of the official size."""
    real = default_data_dir() / "cifar-10-batches-bin" / "test_batch.bin"
    test = bytearray(real.read_bytes() if real.is_file() and real.stat().st_size == 30730000
                     else bytes(30730000))
    for i in range(5):                                   # 5 altered labels (label byte of record i)
        test[i * 3073] = (test[i * 3073] + 1) % 10
    record = bytes(3073)
    binary = {f"cifar-10-batches-bin/data_batch_{i}.bin": record for i in range(1, 6)}
    binary["cifar-10-batches-bin/test_batch.bin"] = bytes(test)
    binary["cifar-10-batches-bin/batches.meta.txt"] = "\n".join(f"c{i}" for i in range(10)).encode()
    one = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]})
    py = {f"cifar-10-batches-py/data_batch_{i}": one for i in range(1, 6)}
    py["cifar-10-batches-py/test_batch"] = bytes(31035526)
    py["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"c"] * 10})
    short = dict(binary)                         # one record short: no longer the official size
    short["cifar-10-batches-bin/test_batch.bin"] = bytes(test[:-3073])
    out = []
    for name, members, sub in (("cifar-10-binary.tar.gz", binary, "bin"), ("cifar-10-python.tar.gz", py, "py"),
                               ("cifar-10-binary.tar.gz", short, "short")):
        folder = d / f"{name.split('.')[0]}_{sub}"
        folder.mkdir()
        _tar(folder / name, members)
        out.append(folder)
    return out


# --------------------------------------------------------------------------- patches
def _raise(exc):
    def f(*a, **k):
        raise exc
    return f


def ctrl_c(module, name):
    """A patch: ``module.name`` raises KeyboardInterrupt (the user presses Ctrl-C there)."""
    return lambda mp: mp.setattr(module, name, _raise(KeyboardInterrupt()))


def ctrl_c_after_epoch_1(mp):
    """train's per-epoch scoring (validation, then test: a stub) passes in epoch 1, then
    Ctrl-C: epoch 1 is saved, 2 is not."""
    calls = []

    def evaluate(*a, **k):
        calls.append(1)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return 0.5
    mp.setattr(train_mod, "evaluate", evaluate)


def little_memory(mp):
    """Pretend 64 MiB are free: a 250-image batch of the reference engine does not fit."""
    mp.setattr(resources, "available_memory", lambda xp=np: 64 << 20)


def no_bundled_model(mp):
    """The demo finds no bundled model: it would train one in --workdir."""
    mp.setattr(demo, "bundled_models", lambda: {})


def no_torch(mp):
    """PyTorch does not import (absent, or a broken install: ``import torch`` fails)."""
    mp.setitem(sys.modules, "torch", None)


# --------------------------------------------------------------------------- setups
# A setup writes what a user already has in {tmp} before the command runs: an earlier
# result, a lock of a live run, a damaged resume or partial file. A refused command must
# leave all of it as it was.
def existing(*names):
    """Earlier outputs ``{tmp}/<name>`` (any content)."""
    def setup(files, tmp):
        for n in names:
            (tmp / n).write_text("an earlier result\n")
    return setup


def live_lock(*names):
    """``{tmp}/<name>`` held by a live process (this test's parent), for each name."""
    def setup(files, tmp):
        for name in names:
            (tmp / name).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename,
                                                "started": "earlier"}))
    return setup


def _resume_state(**change):
    state = {"epoch": 1, "best_acc": 0.1, "history": [{"epoch": 1, "lr": 0.1, "loss": 2.0,
                                                        "train_acc": 0.1, "test_acc": 0.1}],
             "train_config": {}, "rng": np.random.default_rng(0).bit_generator.state}
    return {k: v for k, v in dict(state, **change).items() if v is not None}


def resume_files(state=None, bufs=None, raw=None):
    """{tmp}/t.npz (a vgg_cpu checkpoint of epoch 1) and {tmp}/t_resume.npz holding ``state``
    and momentum ``bufs`` (or the bytes ``raw``), as train --resume reads them."""
    def setup(files, tmp):
        good = load_checkpoint(files["ckpt"])[1]
        save_checkpoint(tmp / "t.npz", build_model("vgg_cpu"), "vgg_cpu", 10,
                        {k: good[k] for k in ("mean", "std")} | {"epoch": 1})
        if raw is not None:
            (tmp / "t_resume.npz").write_bytes(raw(files, tmp))
            return
        arrays = {f"buf.{k}": v for k, v in (bufs or {}).items()}
        arrays["__state__"] = np.frombuffer(json.dumps(state).encode(), np.uint8)
        np.savez(tmp / "t_resume.npz", **arrays)
    return setup


def _truncated_resume(files, tmp):
    resume_files(_resume_state())(files, tmp)
    return (tmp / "t_resume.npz").read_bytes()[:200]


def partial_file(entries: dict):
    """{tmp}/res.partial.json of the BASE reproduce run (its fingerprint) with ``entries``."""
    def setup(files, tmp):
        a = reproduce.parse_args(_fill(BASE["reproduce"] + ["--resume"], files, tmp))
        a.checkpoint_sha256 = reproduce.file_sha256(files["ckpt"])
        (tmp / "res.partial.json").write_text(json.dumps({"fingerprint": reproduce.fingerprint(a),
                                                          "done": entries}))
    return setup


GOOD_ENTRY = {"acc": 40.0, "loss": 0.0, "firing_rate": 0.01, "prerun": 0, "steps": 2,
              "correct": "a0"}                       # 5 images, the 1st and 3rd right: 40 %


# --------------------------------------------------------------------------- CLI table
class Cli(NamedTuple):
    case: str
    command: str
    argv: list
    code: int
    msg: str
    patch: Callable | None = None
    alone: bool = True          # the error is the only line on stderr (refused before work)
    base: bool = True           # start from the command's BASE arguments
    setup: Callable | None = None   # writes what the user already has in {tmp} (see setups)


MAINS = {"demo": demo.main, "train": train_cli.main, "reproduce": reproduce.main,
         "compare": compare.main, "bench": bench_cli.main, "build_slice": build_slice.main,
         "bundle_model": bundle_model.main, "depth_table": depth_table.main,
         "merge_results": merge_results.main, "gpu_check": gpu_check.main}
BASE = {  # arguments every case of a command starts with (a case's own come after: they win)
    "demo": ["--checkpoint", "{ckpt}", "--n-test", "5", "--n-calib", "5", "--T", "2",
             "--batch-size", "5", "--variants", "snn"],
    "reproduce": ["--checkpoint", "{ckpt}", "--dataset", "cifar10-slice", "--n-test", "5",
                  "--n-calib", "5", "--T", "2", "--reading-T", "2", "--rows", "0",
                  "--batch-size", "5", "--out", "{tmp}/res"],
    "train": ["--dataset", "cifar10-slice", "--epochs", "1", "--train-limit", "32",
              "--batch-size", "32", "--no-augment", "--out", "{tmp}/t.npz"],
    "bench": ["--quick", "--no-torch", "--out", "{tmp}/bench.json"],
    "build_slice": ["--out", "{tmp}/slice.npz"],
    "bundle_model": ["--out", "{tmp}/bundled.npz"],
    "compare": ["--checkpoint", "{ckpt}", "--dataset", "cifar10-slice", "--n-test", "5",
                "--n-calib", "5", "--T", "2", "--variants", "snn", "--thresholds", "quantile",
                "--batch-size", "5", "--out", "{tmp}/cmp"],
    "depth_table": [],
    "merge_results": ["--out", "{tmp}/merged"],
    "gpu_check": ["--standin", "--skip-tests", "--out", "{tmp}/gc"],
}
CLI = [
    # demo: numbers, names, counts
    Cli("demo T = 0", "demo", ["--T", "0"], 2, "T must be a positive integer"),
    Cli("demo T < 0", "demo", ["--T", "-3"], 2, "T must be a positive integer"),
    Cli("demo T not a number", "demo", ["--T", "x"], 2, "expected an integer number of time steps"),
    Cli("demo T = 100,000,000 (above 2**24)", "demo", ["--T", "100000000"], 2, "more than 16,777,216"),
    Cli("demo p = 2", "demo", ["--p", "2"], 2, "p must lie in (0, 1]"),
    Cli("demo p = 0", "demo", ["--p", "0"], 2, "p must lie in (0, 1]"),
    Cli("demo p = nan", "demo", ["--p", "nan"], 2, "p must lie in (0, 1]"),
    Cli("demo unknown variant", "demo", ["--variants", "foo"], 2, "unknown variant 'foo'"),
    Cli("demo unknown stats variant (before the evaluation)", "demo",
        ["--stats", "--stats-variant", "foo"], 2, "unknown variant 'foo'",
        patch=lambda mp: mp.setattr(demo, "evaluate_conversion", _raise(AssertionError("ran")))),
    Cli("demo unknown model", "demo", ["--model", "foo"], 2, "unknown model 'foo'"),
    Cli("demo unknown dataset", "demo", ["--dataset", "foo"], 2, "unknown dataset 'foo'"),
    Cli("demo unknown coding", "demo", ["--coding", "foo"], 2, "invalid choice: 'foo'"),
    Cli("demo unknown flag", "demo", ["--frobnicate"], 2, "unrecognized arguments: --frobnicate"),
    Cli("demo n-test = 0", "demo", ["--n-test", "0"], 2, "--n-test must be an integer >= 1, got 0"),
    Cli("demo n-test < 0", "demo", ["--n-test", "-5"], 2, "--n-test must be an integer >= 1, got -5"),
    Cli("demo n-calib = 0", "demo", ["--n-calib", "0"], 2, "--n-calib must be an integer >= 1"),
    Cli("demo batch size = 0", "demo", ["--batch-size", "0"], 2, "--batch-size must be an integer >= 1"),
    Cli("demo chunk = 0", "demo", ["--chunk", "0"], 2, "--chunk must be an integer >= 1"),
    Cli("demo n-stats = 0", "demo", ["--n-stats", "0"], 2, "--n-stats must be an integer >= 1"),
    Cli("demo n-test above the test set", "demo", ["--n-test", "5000"], 2, "the test set has only 1000",
        alone=False),
    Cli("demo n-calib above the training set", "demo", ["--n-calib", "5000"], 2,
        "the training set has only 1000", alone=False),
    # demo: checkpoints
    Cli("demo missing checkpoint", "demo", ["--checkpoint", "{missing}"], 2, "missing.npz does not exist"),
    Cli("demo checkpoint is a folder", "demo", ["--checkpoint", "{folder}"], 2, "is a folder, not a file"),
    Cli("demo random-bytes checkpoint", "demo", ["--checkpoint", "{random}"], 2,
        "is not an .npz (zip) archive"),
    Cli("demo truncated checkpoint", "demo", ["--checkpoint", "{truncated}"], 2, "truncated or corrupt"),
    Cli("demo empty checkpoint", "demo", ["--checkpoint", "{empty}"], 2, "the file is empty"),
    Cli("demo .npy as checkpoint", "demo", ["--checkpoint", "{npy}"], 2, "single array (.npy)"),
    Cli("demo PyTorch state_dict as checkpoint", "demo", ["--checkpoint", "{statedict}"], 2,
        "see docs/import.md"),
    Cli("demo checkpoint mean/std on the 0-255 scale", "demo", ["--checkpoint", "{ck255}"], 2,
        "look like statistics of 0-255 pixels"),
    Cli("demo checkpoint std = 0", "demo", ["--checkpoint", "{std0}"], 2, "has a value <= 0"),
    Cli("demo checkpoint std NaN", "demo", ["--checkpoint", "{stdnan}"], 2, "contain NaN or inf"),
    Cli("demo checkpoint without mean/std", "demo", ["--checkpoint", "{nomean}"], 2,
        "has no mean or std in its header"),
    Cli("demo checkpoint mean/std for 2 channels", "demo", ["--checkpoint", "{mean2}"], 2,
        "mean holds 2 values, but the images have 3 channels"),
    Cli("demo checkpoint with NaN weights", "demo", ["--checkpoint", "{nanw}"], 2,
        "tensor features.0.weight contains NaN or inf"),
    Cli("demo 100-class model on CIFAR-10", "demo", ["--checkpoint", "{c100}"], 2,
        "100-class model, but cifar10-slice has 10 classes"),
    Cli("demo checkpoint stores p = 2", "demo", ["--checkpoint", "{p2}"], 2,
        "the checkpoint stores p = 2.0: the threshold quantile p must lie in (0, 1]", alone=False),
    Cli("demo missing dataset", "demo", ["--dataset", "cifar10", "--data-dir", "{tmp}/nodata"], 2,
        "cifar10 not found in"),
    # demo: resources, Ctrl-C
    Cli("demo T = chunk = 100,000 (would allocate TiBs)", "demo", ["--T", "100000", "--chunk", "100000"],
        2, "use a smaller chunk (--chunk", alone=False),
    Cli("demo batch too large for memory (reference engine)", "demo",
        ["--engine", "reference", "--n-test", "250", "--batch-size", "250"], 2,
        "use a smaller batch (--batch-size", patch=little_memory, alone=False),
    Cli("demo Ctrl-C", "demo", [], 130, "interrupted (Ctrl-C); nothing was written",
        patch=ctrl_c(demo, "evaluate_conversion"), alone=False),
    # train
    Cli("train train-limit = 0", "train", ["--train-limit", "0"], 2,
        "--train-limit must be an integer >= 1, got 0"),
    Cli("train train-limit < 0", "train", ["--train-limit", "-5"], 2,
        "--train-limit must be an integer >= 1, got -5"),
    Cli("train epochs = 0", "train", ["--epochs", "0"], 2, "--epochs must be an integer >= 1"),
    Cli("train batch size = 0", "train", ["--batch-size", "0"], 2, "--batch-size must be an integer >= 1"),
    Cli("train lr = 0", "train", ["--lr", "0"], 2, "lr must be a finite number > 0"),
    Cli("train lr = nan", "train", ["--lr", "nan"], 2, "lr must be a finite number > 0"),
    Cli("train momentum = 1.5", "train", ["--momentum", "1.5"], 2,
        "momentum must be a finite number in [0, 1)"),
    Cli("train weight decay < 0", "train", ["--weight-decay", "-1"], 2,
        "weight_decay must be a finite number >= 0"),
    Cli("train warm-up < 0", "train", ["--warmup", "-1"], 2, "--warmup must be an integer >= 0"),
    Cli("train milestone = 0", "train", ["--milestones", "0"], 2, "a milestone epoch must be an integer >= 1"),
    Cli("train unknown model", "train", ["--model", "foo"], 2, "unknown model 'foo'"),
    Cli("train unknown dataset", "train", ["--dataset", "foo"], 2, "unknown dataset 'foo'"),
    Cli("train out is an existing folder", "train", ["--out", "{folder}"], 2, "is an existing folder"),
    Cli("train out under a file", "train", ["--out", "{afile}/m.npz"], 2, "is a file, not a folder"),
    Cli("train out in an unwritable folder", "train", ["--out", "/proc/icsnn/m.npz"], 2,
        "cannot write in /proc"),
    Cli("train resume without a run", "train", ["--resume"], 2, "cannot resume"),
    Cli("train missing dataset", "train", ["--dataset", "cifar10", "--data-dir", "{tmp}/nodata"], 2,
        "--download"),
    Cli("train diverges", "train", ["--lr", "1e6", "--batch-size", "8"], 2,
        "training diverged at batch", alone=False),
    Cli("train Ctrl-C in epoch 1", "train", ["--epochs", "2"], 130,
        "no epoch was complete: nothing was written", patch=ctrl_c(train_mod, "train_epoch"), alone=False),
    Cli("train Ctrl-C in epoch 2", "train", ["--epochs", "2"], 130,
        "kept the last complete checkpoint", patch=ctrl_c_after_epoch_1, alone=False),
    # reproduce
    Cli("reproduce missing checkpoint", "reproduce", ["--checkpoint", "{missing}"], 2, "does not exist"),
    Cli("reproduce corrupt checkpoint", "reproduce", ["--checkpoint", "{random}"], 2, "not an .npz"),
    Cli("reproduce no checkpoint given", "reproduce", ["--dataset", "cifar10-slice"], 2,
        "the following arguments are required: --checkpoint", base=False),
    Cli("reproduce checkpoint mean/std on the 0-255 scale", "reproduce", ["--checkpoint", "{ck255}"], 2,
        "0-255"),
    Cli("reproduce 100-class model on CIFAR-10", "reproduce", ["--checkpoint", "{c100}"], 2, "100-class model"),
    Cli("reproduce missing dataset", "reproduce", ["--dataset", "cifar10", "--data-dir", "{tmp}/nodata"], 2,
        "--download"),
    Cli("reproduce p = 2", "reproduce", ["--p", "0.9", "2"], 2, "p must lie in (0, 1]"),
    Cli("reproduce row 99", "reproduce", ["--rows", "99"], 2, "--rows takes indices 0..19"),
    Cli("reproduce T = 0", "reproduce", ["--reading-T", "0"], 2, "T must be a positive integer"),
    Cli("reproduce validation = 0", "reproduce", ["--validation", "0"], 2,
        "--validation must be an integer >= 1"),
    Cli("reproduce validation above the training set", "reproduce", ["--validation", "2000"], 2,
        "the training set has only 1000"),
    Cli("reproduce unknown dataset", "reproduce", ["--dataset", "foo"], 2, "unknown dataset 'foo'"),
    Cli("reproduce out names a folder", "reproduce", ["--out", "{stem}"], 2, "res.json is an existing folder"),
    Cli("reproduce log is a folder", "reproduce", ["--log", "{folder}"], 2, "--log"),
    Cli("reproduce Ctrl-C", "reproduce", ["--log", "{tmp}/log.txt"], 130,
        "progress so far is in", patch=ctrl_c(reproduce, "sweep"), alone=False),
    # bench
    Cli("bench repeats = 0", "bench", ["--repeats", "0"], 2, "--repeats must be an integer >= 1"),
    Cli("bench chunk = 0", "bench", ["--chunk", "0"], 2, "--chunk must be an integer >= 1"),
    Cli("bench agreement seeds = 0", "bench", ["--agreement-seeds", "0"], 2,
        "--agreement-seeds must be an integer >= 1"),
    Cli("bench unknown part", "bench", ["--only", "foo"], 2, "invalid choice: 'foo'"),
    Cli("bench out is a folder", "bench", ["--out", "{folder}"], 2, "is an existing folder"),
    Cli("bench Ctrl-C", "bench", [], 130, "nothing was written", patch=ctrl_c(bench_cli, "run"), alone=False),
    # scripts
    Cli("build_slice missing source", "build_slice", ["--src", "{tmp}/nosrc"], 2, "not found: --src must be"),
    Cli("build_slice no source given", "build_slice", [], 2, "the following arguments are required: --src"),
    Cli("build_slice per-class = 0", "build_slice", ["--src", "{tmp}", "--per-class", "0"], 2,
        "--per-class must be an integer >= 1"),
    Cli("build_slice out is a folder", "build_slice", ["--src", "{tmp}", "--out", "{folder}"], 2,
        "is an existing folder"),
    Cli("build_slice Ctrl-C", "build_slice", ["--src", "{tmp}"], 130, "nothing was written",
        patch=ctrl_c(build_slice, "build")),
    Cli("bundle_model missing checkpoint", "bundle_model", ["{missing}"], 2, "does not exist"),
    Cli("bundle_model mean/std on the 0-255 scale", "bundle_model", ["{ck255}"], 2, "0-255"),
    Cli("bundle_model p = 2", "bundle_model", ["{ckpt}", "--p", "2"], 2, "p must lie in (0, 1]"),
    Cli("bundle_model max-drop < 0", "bundle_model", ["{ckpt}", "--max-drop", "-1"], 2,
        "--max-drop must be >= 0"),
    Cli("bundle_model out is a folder", "bundle_model", ["{ckpt}", "--out", "{folder}"], 2,
        "is an existing folder"),
    Cli("bundle_model Ctrl-C", "bundle_model", ["{ckpt}"], 130, "nothing was written",
        patch=ctrl_c(bundle_model, "load_dataset")),
    # ---- issue 25 ----------------------------------------------------------------------
    # 1. threshold balancing: a p whose quantile is 0 stops the run (a sweep: before any work)
    Cli("demo p = 1e-9 (zero quantile)", "demo", ["--p", "1e-9"], 2,
        "the p-quantile is 0 at p = 1e-09 in features.1: ", alone=False),
    Cli("reproduce sweep with a zero-quantile p (refused before work)", "reproduce",
        ["--p", "0.99", "1e-9"], 2, "--p 1e-09 (layer-wise thresholds): threshold balancing: the "
        "p-quantile is 0 at p = 1e-09 in features.1: "),
    Cli("reproduce sweep with two p of the same thresholds", "reproduce", ["--p", "1.0", "1.0"], 2,
        "--p 1.0 and --p 1.0 give the same layer-wise thresholds"),
    # 2. committed results are never a default output, nor replaced unless told
    Cli("reproduce onto an existing result", "reproduce", [], 2,
        "res.json exists: add --force to replace it", setup=existing("res.json")),
    Cli("reproduce onto an existing figure", "reproduce", [], 2, "res.png exists: add --force",
        setup=existing("res.png")),
    Cli("reproduce --resume without a partial file, onto a result", "reproduce", ["--resume"], 2,
        "res.md exists: add --force to replace it (or --resume, if an interrupted run left "
        "res.partial.json)", setup=existing("res.md")),
    Cli("compare onto an existing result", "compare", [], 2, "cmp.json exists: add --force",
        setup=existing("cmp.json")),
    Cli("train onto an earlier run's checkpoint", "train", [], 2,
        "t.npz exists: add --force to replace it (or --resume to continue that run)",
        setup=existing("t.npz")),
    Cli("train onto an earlier run's best checkpoint", "train", [], 2, "t_best.npz exists",
        setup=existing("t_best.npz")),
    Cli("bench onto an existing result", "bench", [], 2, "bench.json exists: add --force",
        setup=existing("bench.json")),
    Cli("build_slice onto an existing slice", "build_slice", ["--src", "{tmp}"], 2,
        "slice.npz exists: add --force", setup=existing("slice.npz")),
    Cli("bundle_model onto an existing model", "bundle_model", ["{ckpt}"], 2,
        "bundled.npz exists: add --force", setup=existing("bundled.npz")),
    Cli("merge_results onto an existing table", "merge_results", ["{resA}"], 2,
        "merged.json exists: add --force", setup=existing("merged.json")),
    Cli("reproduce --rows without a value", "reproduce", ["--rows"], 2,
        "argument --rows: expected at least one argument"),
    Cli("train --milestones without a value", "train", ["--milestones"], 2,
        "argument --milestones: expected at least one argument"),
    Cli("bench --only without a value", "bench", ["--only"], 2,
        "argument --only: expected at least one argument"),
    # 3. one run per output: a live run's lock is named with its pid
    Cli("reproduce while another run writes the same output", "reproduce", [], 2,
        "res is in use by another run (pid", setup=live_lock("res.lock")),
    Cli("compare while another run writes the same output", "compare", [], 2,
        "cmp is in use by another run (pid", setup=live_lock("cmp.lock")),
    Cli("train while another run writes the same checkpoint", "train", [], 2,
        "t.npz is in use by another run (pid", setup=live_lock("t.npz.lock")),
    Cli("demo on the spot while another demo trains in --workdir", "demo",
        ["--n-test", "5", "--n-calib", "5", "--T", "2", "--variants", "snn", "--workdir", "{tmp}"],
        2, "--workdir {tmp} is in use by another run (pid", patch=no_bundled_model,
        setup=live_lock(".demo.lock"), base=False),
    Cli("demo on the spot while another demo trains there (both its locks: the workdir's and its "
        "checkpoint's)", "demo",
        ["--n-test", "5", "--n-calib", "5", "--T", "2", "--variants", "snn", "--workdir", "{tmp}"],
        2, "--workdir {tmp} is in use by another run (pid", patch=no_bundled_model,
        setup=live_lock(".demo.lock", "demo_vgg_cpu_cifar10-slice.npz.lock"), base=False),
    Cli("merge_results while another run writes the same table", "merge_results", ["{resA}"], 2,
        "merged is in use by another run (pid", setup=live_lock("merged.lock")),
    # 4. every file checked before the work starts
    Cli("demo int8 checkpoint tensor", "demo", ["--checkpoint", "{int8}"], 2,
        "tensor features.0.weight is int8, not floating point"),
    Cli("demo bool checkpoint tensor", "demo", ["--checkpoint", "{bool}"], 2,
        "tensor features.0.bias is bool, not floating point"),
    Cli("demo header is a JSON list", "demo", ["--checkpoint", "{hlist}"], 2,
        "the header is a JSON list, not an object"),
    Cli("demo header: unknown arch", "demo", ["--checkpoint", "{archfoo}"], 2,
        "header field arch is 'foo': expected one of resnet20"),
    Cli("demo header: num_classes a string", "demo", ["--checkpoint", "{ncstr}"], 2,
        "header field num_classes is '10': expected a positive integer"),
    Cli("demo header: num_classes 0", "demo", ["--checkpoint", "{nc0}"], 2,
        "header field num_classes is 0: expected a positive integer"),
    Cli("demo header: mean a string", "demo", ["--checkpoint", "{meanstr}"], 2,
        "header field mean is 'abc': expected 1 or 3 numbers"),
    Cli("demo header: 4 mean values", "demo", ["--checkpoint", "{mean4}"], 2,
        "header: mean holds 4 values, but the images have 3 channels"),
    Cli("demo header: p a string", "demo", ["--checkpoint", "{pstr}"], 2,
        "the checkpoint stores p = 'x': the threshold quantile p must lie in (0, 1]"),
    Cli("demo header: unknown activation", "demo", ["--checkpoint", "{actfoo}"], 2,
        "header field activation is 'foo': expected relu or qcfs"),
    Cli("demo header: QCFS without levels", "demo", ["--checkpoint", "{qcfsnolevels}"], 2,
        "header field levels is None: a QCFS checkpoint needs its quantisation levels L"),
    Cli("demo header: version a string", "demo", ["--checkpoint", "{versionstr}"], 2,
        "header field version is 'x': expected a format version number"),
    Cli("demo /dev/zero as checkpoint", "demo", ["--checkpoint", "/dev/zero"], 2,
        "checkpoint /dev/zero is not a regular file (a device, pipe or socket)"),
    Cli("train resume state truncated", "train", ["--resume"], 2,
        "t_resume.npz is corrupt (BadZipFile", setup=resume_files(raw=_truncated_resume)),
    Cli("train resume state without rng", "train", ["--resume"], 2, "its state lacks 'rng'",
        setup=resume_files(_resume_state(rng=None))),
    Cli("train resume state with a wrong momentum shape", "train", ["--resume"], 2,
        "momentum of 'features.0.weight' has shape (3, 3), the parameter (32, 3, 3, 3)",
        setup=resume_files(_resume_state(), {"features.0.weight": np.zeros((3, 3), np.float32)})),
    Cli("train resume state of an epoch beyond the run", "train", ["--resume"], 2,
        "epoch 5 is not an epoch count in 1..1", setup=resume_files(_resume_state(epoch=5))),
    Cli("train resume state with a short history", "train", ["--resume"], 2,
        "its history is not one record", setup=resume_files(_resume_state(history=[]))),
    Cli("train resume state with a foreign RNG", "train", ["--resume"], 2,
        "its RNG state is not a PCG64 state", setup=resume_files(_resume_state(rng={"x": 1}))),
    Cli("reproduce partial entry without its record", "reproduce", ["--resume"], 2,
        "measurement '|SNN|2' lacks correct", setup=partial_file(
            {"|SNN|2": {k: v for k, v in GOOD_ENTRY.items() if k != "correct"}})),
    Cli("reproduce partial entry whose record disagrees", "reproduce", ["--resume"], 2,
        "has acc 90.0 but its record counts 2 of 5 right",
        setup=partial_file({"|SNN|2": dict(GOOD_ENTRY, acc=90.0)})),
    Cli("reproduce partial entry of an unknown row", "reproduce", ["--resume"], 2,
        "names an unknown row 'NOPE'", setup=partial_file({"|NOPE|2": GOOD_ENTRY})),
    Cli("reproduce partial entry that is a list", "reproduce", ["--resume"], 2,
        "measurement '|SNN|2' is a list, not an object", setup=partial_file({"|SNN|2": [1]})),
    Cli("repacked binary archive, test_batch.bin of official size altered", "demo",
        ["--dataset", "cifar10", "--data-dir", "{c10bin}"], 2,
        "member cifar-10-batches-bin/test_batch.bin: SHA1"),
    Cli("repacked binary archive, test_batch.bin one record short and altered", "demo",
        ["--dataset", "cifar10", "--data-dir", "{c10short}"], 2,
        "member cifar-10-batches-bin/test_batch.bin: SHA1"),
    Cli("repacked python archive, test_batch of official size altered", "demo",
        ["--dataset", "cifar10", "--data-dir", "{c10py}"], 2,
        "member cifar-10-batches-py/test_batch: MD5"),
    Cli("merge_results: one checkpoint name, two contents", "merge_results", ["{resA}", "{resB}"], 2,
        "resB.json: made with another checkpoint than"),
    # 6. scripts and optional paths keep the CLI promise
    Cli("depth_table on an empty file", "depth_table", ["{emptyjson}"], 2,
        "emptyjson.json: not a readable reproduction result"),
    Cli("depth_table on an empty object", "depth_table", ["{objjson}"], 2,
        "objjson.json: not a reproduction result (no ann_acc"),
    Cli("depth_table on a JSON list", "depth_table", ["{listjson}"], 2,
        "listjson.json: not a reproduction result (a JSON list, not an object)"),
    Cli("depth_table on a benchmark JSON", "depth_table", ["{benchjson}"], 2,
        "benchjson.json: not a reproduction result (no ann_acc"),
    Cli("merge_results on a benchmark JSON", "merge_results", ["{resA}", "{benchjson}"], 2,
        "benchjson.json: not a reproduction result"),
    Cli("merge_results Ctrl-C", "merge_results", ["{resA}"], 130, "nothing was written",
        patch=ctrl_c(merge_results, "merge")),
    Cli("depth_table Ctrl-C", "depth_table", ["{resA}"], 130, "nothing was written",
        patch=ctrl_c(depth_table, "load")),
    Cli("bundle_model float16 overflow (checked before anything is written)", "bundle_model",
        ["{big}"], 2, "tensor features.0.weight has values up to 1e+05, beyond float16's range"),
    Cli("bench --agreement-seeds with --no-torch", "bench", ["--agreement-seeds", "1"], 2,
        "--agreement-seeds compares with PyTorch: not with --no-torch"),
    Cli("bench --agreement-seeds without PyTorch", "bench",
        ["--quick", "--agreement-seeds", "1", "--out", "{tmp}/a.json"], 2,
        "--agreement-seeds compares with PyTorch, which does not import here", patch=no_torch,
        base=False),
    Cli("gpu_check Ctrl-C", "gpu_check", [], 130, "interrupted (Ctrl-C); the steps run so far are lost (nothing was written)",
        patch=ctrl_c(gpu_check, "run_step"), alone=False),
    Cli("demo --model beside the model that runs (it would be ignored)", "demo", ["--model", "resnet20"], 2,
        "--model resnet20 is what the demo trains when no model is bundled; to run a model, name it: "
        "--checkpoint resnet20"),
    Cli("demo --workdir unwritable (names --workdir, not --out)", "demo",
        ["--n-test", "5", "--workdir", "/proc/icsnn_nope"], 2,
        "--workdir: the on-the-spot model /proc/icsnn_nope/demo_vgg_cpu_cifar10-slice.npz: cannot "
        "write in /proc", patch=no_bundled_model, base=False),
]


def _fill(args, files, tmp):
    names = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp)}
    return [a.format(**names) for a in args]


def _listing(*folders):
    return {p for d in folders for p in Path(d).rglob("*")}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    argv = (BASE[c.command] if c.base else []) + c.argv
    if c.patch:
        c.patch(monkeypatch)
    if c.setup:
        c.setup(files, tmp_path)
    had = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    before = _listing(files["dir"], tmp_path)
    rc = MAINS[c.command](_fill(argv, files, tmp_path))
    out, err = capsys.readouterr()
    assert rc == c.code, err
    assert "Traceback" not in err + out
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err
    assert _fill([c.msg], files, tmp_path)[0] in errors[0], errors[0]
    if c.alone:
        assert err.strip() == errors[0], err
    if c.code == 2:      # refused: nothing written, no stray file (a log may have been started)
        assert {p for p in _listing(files["dir"], tmp_path) - before if p.suffix != ".txt"} == set()
    assert {p: p.read_bytes() for p in had if p.is_file()} == had     # what the user had: kept


def test_ctrl_c_in_train_names_the_checkpoint_it_kept(files, tmp_path, capsys, monkeypatch):
    ctrl_c_after_epoch_1(monkeypatch)
    out = tmp_path / "t.npz"
    rc = train_cli.main(_fill(BASE["train"] + ["--epochs", "2"], files, tmp_path))
    err = capsys.readouterr().err.strip().splitlines()[-1]    # after the progress lines (stderr)
    assert rc == 130
    assert err == (f"error: interrupted (Ctrl-C); kept the last complete checkpoint {out} (epoch 1 "
                   f"of 2; the best so far is {tmp_path / 't_best.npz'}); continue with --resume")
    assert load_checkpoint(out)[1]["epoch"] == 1


@pytest.mark.parametrize("argv, msg", [
    (["-m", "icsnn_np.demo", "--checkpoint", "{ck255}", "--n-test", "5"], "0-255"),
    (["-m", "icsnn_np.reproduce", "--checkpoint", "missing.npz"], "missing.npz does not exist"),
    (["-m", "icsnn_np.train", "--train-limit", "0"], "--train-limit must be an integer >= 1"),
], ids=["demo 0-255 checkpoint", "reproduce missing checkpoint", "train train-limit 0"])
def test_the_judged_commands_as_processes(argv, msg, files, tmp_path):
    """The issue's own commands, as a user runs them: exit 2, one line, no traceback."""
    r = subprocess.run([sys.executable, *_fill(argv, files, tmp_path)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith("error:")
    assert msg in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- outputs (issue 25)
def _names(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())


def test_reproduce_writes_to_the_untracked_runs_folder_and_replaces_only_when_told(
        files, tmp_path, capsys, monkeypatch):
    """Without --out the table goes to runs/ (gitignored), not to results/; a second run
    is refused, --force replaces the three files; no lock or partial file stays behind."""
    monkeypatch.chdir(tmp_path)
    argv = _fill([a for a in BASE["reproduce"] if "{tmp}/res" not in a and a != "--out"], files, tmp_path)
    assert reproduce.main(argv) == 0
    stem = f"runs/{files['ckpt'].stem}_cifar10-slice"
    assert _names(tmp_path) == [f"{stem}.json", f"{stem}.md", f"{stem}.png"]
    first = (tmp_path / f"{stem}.json").read_bytes()
    capsys.readouterr()
    assert reproduce.main(argv) == 2
    assert capsys.readouterr().err.strip() == (f"error: --out {stem}.json exists: add --force to replace "
                                               f"it (or --resume, if an interrupted run left "
                                               f"{Path(stem).name}.partial.json), or name another --out")
    assert (tmp_path / f"{stem}.json").read_bytes() == first
    assert reproduce.main(argv + ["--force", "--seed", "1"]) == 0
    assert (tmp_path / f"{stem}.json").read_bytes() != first
    assert _names(tmp_path) == [f"{stem}.json", f"{stem}.md", f"{stem}.png"]
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{stem}.json"], cwd=ROOT)
    assert ignored.returncode == 0 or not (ROOT / ".git").exists()       # runs/ is not tracked


def test_a_stale_lock_is_taken_over_with_a_note(files, tmp_path, capsys):
    """A lock whose process no longer runs (a killed run) does not block the next run."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "res.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    assert reproduce.main(_fill(BASE["reproduce"], files, tmp_path)) == 0
    err = capsys.readouterr().err
    assert f"note: took over the stale lock {tmp_path / 'res.lock'} (pid {dead.pid} is no longer running)" in err
    assert not (tmp_path / "res.lock").exists() and (tmp_path / "res.json").is_file()


def holding(stem):
    """A live process that holds ``stem`` (``io.files.exclusive``), as a concurrent run would,
    once it has printed "held"; it answers SIGINT also when started in the background."""
    p = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time\nfrom icsnn_np.io.files import exclusive\n"
         "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
         "with exclusive(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)",
         str(stem)], stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_run_is_refused_while_the_first_holds_the_output(files, tmp_path, capsys):
    """A live process holds res (a second process, as a concurrent run would); reproduce on
    the same --out stops naming its pid; once it is killed, its lock is taken over."""
    holder = holding(tmp_path / "res")
    try:
        assert reproduce.main(_fill(BASE["reproduce"], files, tmp_path)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --out {tmp_path / 'res'} is in use by another run (pid {holder.pid}")
    finally:
        holder.kill()                                   # killed: its lock stays, stale
        holder.wait()
    assert (tmp_path / "res.lock").exists() and not (tmp_path / "res.json").exists()
    assert reproduce.main(_fill(BASE["reproduce"], files, tmp_path)) == 0
    assert f"took over the stale lock {tmp_path / 'res.lock'} (pid {holder.pid}" in capsys.readouterr().err


@pytest.mark.parametrize("command, stem, existing", [("train", "t.npz", ["t.npz", "t_best.npz"]),
                                                      ("reproduce", "res", ["res.json"])])
def test_a_live_run_is_named_before_its_existing_outputs(command, stem, existing, files, tmp_path, capsys):
    """While a live run holds the output and has already written files there, a second run is
    told the output is in use, not that it exists (whose --force or --resume would collide)."""
    for name in existing:
        (tmp_path / name).write_bytes(b"written by the live run")
    holder = holding(tmp_path / stem)
    try:
        main = MAINS[command]
        assert main(_fill(BASE[command], files, tmp_path)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: --out {tmp_path / stem} is in use by another run (pid {holder.pid}"), err
    finally:
        holder.kill()
        holder.wait()


def test_an_overflowing_batch_is_one_error_without_warnings(env):
    """Inputs x 1e38 overflow float32 inside the network: one ValueError, no RuntimeWarnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="overflow float32 inside the network"):
            ann_accuracy(env.model, np.clip(env.x, -1, 1) * 1e38, env.y)


def test_an_overflowing_batch_into_the_snn_is_one_error_without_warnings(env):
    """The SNN's first currents on inputs x 1e38 overflow: one ValueError, no RuntimeWarnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="the SNN's first input currents on the test batch"):
            snn_accuracy(_snn(env), np.clip(env.x, -1, 1) * 1e38, env.y, 2, env.cfg)


def test_gpu_check_passes_a_ctrl_c_on_to_its_step_which_cleans_up(tmp_path):
    """Ctrl-C sent to gpu_check alone (not its process group) reaches the running step as
    SIGINT, so the step releases its output lock instead of being killed with it held."""
    child = holding(tmp_path / "step")
    assert (tmp_path / "step.lock").exists()
    gpu_check.stop_child(child, wait_s=20)
    assert child.returncode is not None and not (tmp_path / "step.lock").exists()


def test_a_float16_overflow_is_one_line_without_warnings(tmp_path):
    """bundle_model's range check compares in Python floats: no RuntimeWarning before the line."""
    model = Sequential(Flatten(), Linear(4, 2))
    model[1].params["weight"][0, 0] = 1e5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="values up to 1e\\+05, beyond float16's range"):
            bundle_model.check_float16(model, "big.npz")


def test_the_files_of_a_table_are_written_all_or_none(tmp_path):
    """An interruption while the three files are written leaves the earlier three whole and
    no temporary file."""
    old = {tmp_path / f"t{ext}": b"earlier" for ext in (".json", ".md", ".png")}
    for p, b in old.items():
        p.write_bytes(b)

    def fails(f):
        f.write(b"half a fig")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write_all({tmp_path / "t.json": b"new", tmp_path / "t.md": b"new", tmp_path / "t.png": fails})
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == old


def test_every_table_states_its_threshold_rule(files, tmp_path, capsys):
    assert reproduce.main(_fill(BASE["reproduce"], files, tmp_path)) == 0
    settings = json.loads((tmp_path / "res.json").read_text())["settings"]
    assert settings["threshold_rule"].startswith("layer: p-quantile of all the layer's ReLU outputs")
    assert "threshold_rule=layer: p-quantile" in (tmp_path / "res.md").read_text()
    assert compare.main(_fill(BASE["compare"], files, tmp_path)) == 0
    assert json.loads((tmp_path / "cmp.json").read_text())["settings"]["threshold_rule"].startswith("layer:")
    capsys.readouterr()
    assert demo.main(_fill(BASE["demo"] + ["--channelwise", "--json"], files, tmp_path)) == 0
    rule = json.loads(capsys.readouterr().out)["config"]["threshold_rule"]
    assert rule.startswith("channel: p-quantile of each channel's positive ReLU outputs")


def test_merge_results_matches_checkpoints_by_content(files, tmp_path, capsys):
    """The same content under two names merges; a file without a hash (made before reproduce
    recorded one) is matched by name, with a note."""
    renamed = json.loads(files["resA"].read_text())
    renamed["settings"]["checkpoint"] = "resnet20_copy.npz"
    (tmp_path / "a2.json").write_text(json.dumps(renamed))
    assert merge_results.main([str(files["resA"]), str(tmp_path / "a2.json"), "--out", str(tmp_path / "m")]) == 0
    legacy = json.loads(files["resA"].read_text())
    del legacy["checkpoint_sha256"]
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    capsys.readouterr()
    assert merge_results.main([str(files["resA"]), str(tmp_path / "old.json"), "--out", str(tmp_path / "n")]) == 0
    assert "records no checkpoint hash" in capsys.readouterr().err


def test_training_progress_goes_to_stderr_when_it_is_not_a_terminal(files, tmp_path, capsys, monkeypatch):
    """Piped or logged, a run shows batch progress within the epoch and a line per epoch,
    all on stderr (here after 0 s instead of FIRST_REPORT_S); stdout stays empty."""
    monkeypatch.setattr(train_mod, "FIRST_REPORT_S", 0.0)
    monkeypatch.setattr(train_mod, "EVERY_S", 0.0)
    argv = _fill(BASE["train"], files, tmp_path)
    argv[argv.index("--batch-size") + 1] = "8"
    assert train_cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert out == "" and "epoch 1 batch 1/4 loss" in err and "epoch   1/1" in err


# --------------------------------------------------------------------------- API table
@pytest.fixture(scope="module")
def env():
    """A tiny network (conv, ReLU, pool, linear) on 8x8 images, and a normalised batch."""
    rng = np.random.default_rng(0)
    model = Sequential(Conv2d(3, 4, 3, padding=1, rng=rng), ReLU(), AvgPool2d(2), Flatten(),
                       Linear(64, 3, rng=rng))
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    raw = rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    return types.SimpleNamespace(model=model, x=x, y=y, raw=raw,
                                 cfg=ConversionConfig(T=(2,), n_calib=4, batch_size=4))


def _with(x, idx, value):
    x = x.copy()
    x[idx] = value
    return x


def _snn8():
    """A converted conv of 8 channels on the env's 8x8 images: a state (4, 8, 8, 8), C = W."""
    rng = np.random.default_rng(3)
    snn = convert(Sequential(Conv2d(3, 8, 3, padding=1, rng=rng), ReLU(), Flatten(), Linear(512, 3, rng=rng)))
    snn.nodes[0].v_th = 1.0
    return snn


def _snn(e, v_th=1.0):
    snn = convert(e.model)
    for n in snn.nodes:
        n.v_th = v_th
    return snn


def _nan_weights_after_convert(e):
    model = Sequential(Conv2d(3, 4, 3, padding=1, rng=np.random.default_rng(1)), ReLU(), Flatten(),
                       Linear(256, 3, rng=np.random.default_rng(2)))
    snn = convert(model)
    model[0].params["weight"][0] = NAN            # changed after conversion (shared weights)
    balance_thresholds(snn, model, [e.x])


def _alg2_overflow(e):
    """Currents that overflow float32: v(T) is inf, Alg. 2's mean of it is not a v(0)."""
    model = Sequential(Flatten(), Linear(192, 4, rng=np.random.default_rng(0)), ReLU(), Linear(4, 2))
    model[1].params["weight"][...] = 3e38
    with np.errstate(over="ignore", invalid="ignore"):
        alg2_data_init(convert(model), [np.abs(e.x) + 1], 2)


class Api(NamedTuple):
    case: str
    call: Callable
    exc: type
    msg: str


API = [
    # NaN / inf where values enter
    Api("NaN pixel among calibration images (balance_thresholds)",
        lambda e: balance_thresholds(convert(e.model), e.model, [_with(e.x, (1, 0, 2, 2), NAN)]),
        ValueError, "calibration batch 0 contains NaN or inf"),
    Api("NaN pixel among calibration images (evaluate_conversion)",
        lambda e: evaluate_conversion(e.model, _with(e.x, (3, 2, 1, 1), NAN), e.x, e.y, e.cfg),
        ValueError, "the calibration batch (x_calib) contains NaN or inf"),
    Api("NaN pixel among calibration images (calibrated_snn)",
        lambda e: calibrated_snn(e.model, _with(e.x, (0, 0, 0, 0), NAN), "ic-snn", 2, e.cfg),
        ValueError, "calibration batch (x_calib) contains NaN"),
    Api("inf among test images (evaluate_conversion)",
        lambda e: evaluate_conversion(e.model, e.x, _with(e.x, (0, 0, 0, 0), INF), e.y, e.cfg),
        ValueError, "the test batch (x_test) contains NaN or inf"),
    Api("NaN input to the simulation (reference)",
        lambda e: simulate(_snn(e), _with(e.x, (2, 1, 3, 3), NAN), 4), ValueError,
        "the input batch contains NaN or inf"),
    Api("inf input to the simulation (fast)",
        lambda e: run_sim(_snn(e), _with(e.x, (2, 1, 3, 3), -INF), 4, engine="fast"), ValueError,
        "the input batch contains NaN or inf"),
    Api("NaN input to ann_accuracy", lambda e: ann_accuracy(e.model, _with(e.x, (0, 0, 0, 0), NAN), e.y),
        ValueError, "the image batch contains NaN or inf"),
    Api("NaN weights into convert", lambda e: convert(_nan_linear()), ValueError,
        "weight tensor 0.weight contains NaN or inf"),
    Api("NaN weights after convert (calibration activations)", _nan_weights_after_convert, ValueError,
        "1: the calibration activations contain NaN or inf"),
    Api("V_th = 0", lambda e: run_sim(_snn(e, 0.0), e.x, 4), ValueError, "1: threshold V_th has a value <= 0"),
    Api("V_th < 0 (fast engine)", lambda e: run_sim(_snn(e, -0.5), e.x, 4, engine="fast"), ValueError,
        "threshold V_th has a value <= 0 (-0.5)"),
    Api("V_th NaN", lambda e: simulate(_snn(e, NAN), e.x, 4), ValueError, "threshold V_th has NaN or inf"),
    Api("V_th inf", lambda e: simulate(_snn(e, INF), e.x, 4), ValueError, "threshold V_th has NaN or inf"),
    Api("channel-wise V_th with a zero",
        lambda e: simulate(_snn(e, np.array([1, 1, 0, 1.0]).reshape(4, 1, 1)), e.x, 4), ValueError,
        "has a value <= 0"),
    Api("v(0) NaN through set_v0", lambda e: _snn(e).set_v0([NAN]), ValueError, "1: v(0) contains NaN or inf"),
    Api("v(0) inf set on the node", lambda e: simulate(_set(_snn(e), v0=np.full((4, 1, 1), INF)), e.x, 4),
        ValueError, "v(0) contains NaN or inf"),
    Api("Alg. 2 on overflowing currents", _alg2_overflow, ValueError,
        "Alg. 2: the v(0) of 2 (the mean of its recorded v(T)) contains NaN or inf"),
    Api("rate coding with a NaN mean", lambda e: simulate(_snn(e), e.x, 2, coding="rate", mean=[NAN] * 3,
                                                          std=[0.2] * 3), ValueError, "rate coding: mean"),
    # empty batches, raw integer images, labels
    Api("raw uint8 images into simulate", lambda e: simulate(_snn(e), e.raw, 4), ValueError,
        "is uint8, not a normalised float batch"),
    Api("raw int64 images into evaluate_conversion",
        lambda e: evaluate_conversion(e.model, e.x, e.raw.astype(np.int64), e.y, e.cfg), ValueError,
        "the test batch (x_test) is int64, not a normalised float batch"),
    Api("raw uint8 images into ann_accuracy", lambda e: ann_accuracy(e.model, e.raw, e.y), ValueError,
        "is uint8, not a normalised float batch"),
    Api("raw uint8 calibration batch into balance_thresholds",
        lambda e: balance_thresholds(convert(e.model), e.model, [e.raw]), ValueError,
        "calibration batch 0 is uint8"),
    Api("raw uint8 images into spike_stats", lambda e: spike_stats(e.model, _snn(e), e.raw, 2), ValueError,
        "the image batch of spike_stats is uint8"),
    Api("empty batch into simulate", lambda e: simulate(_snn(e), e.x[:0], 4), ValueError,
        "the input batch is empty (0 images)"),
    Api("empty test set into evaluate_conversion", lambda e: evaluate_conversion(e.model, e.x, e.x[:0],
                                                                                e.y[:0], e.cfg),
        ValueError, "the test batch (x_test) is empty"),
    Api("empty calibration set into evaluate_conversion",
        lambda e: evaluate_conversion(e.model, e.x[:0], e.x, e.y, e.cfg), ValueError,
        "the calibration batch (x_calib) is empty"),
    Api("no calibration batches into balance_thresholds",
        lambda e: balance_thresholds(convert(e.model), e.model, []), ValueError,
        "needs at least one batch of calibration images"),
    Api("empty batch into spike_stats", lambda e: spike_stats(e.model, _snn(e), e.x[:0], 2), ValueError,
        "the image batch of spike_stats is empty"),
    Api("empty batch into ann_accuracy", lambda e: ann_accuracy(e.model, e.x[:0], e.y[:0]), ValueError,
        "the image batch is empty"),
    Api("fewer labels than images", lambda e: ann_accuracy(e.model, e.x, e.y[:3]), ValueError,
        "expected 4 integer labels"),
    Api("a flat vector instead of images", lambda e: ann_accuracy(e.model, e.x.reshape(4, -1), e.y),
        ValueError, "must be a normalised batch of images (N, C, H, W)"),
    # normalisation
    Api("normalize: float pixels (NaN among them)", lambda e: normalize(
        _with(e.raw.astype(float), (0, 0, 0, 0), NAN), [0.5] * 3, [0.25] * 3), ValueError,
        "normalize takes raw images, uint8 pixels 0..255, got float64"),
    Api("normalize: NaN mean", lambda e: normalize(e.raw, [NAN, 0.5, 0.5], [0.25] * 3), ValueError,
        "contain NaN or inf"),
    Api("normalize: inf std", lambda e: normalize(e.raw, [0.5] * 3, [0.25, INF, 0.25]), ValueError,
        "contain NaN or inf"),
    Api("normalize: std = 0", lambda e: normalize(e.raw, [0.5] * 3, [0.25, 0.0, 0.25]), ValueError,
        "has a value <= 0"),
    Api("normalize: std < 0", lambda e: normalize(e.raw, [0.5] * 3, [-0.25] * 3), ValueError,
        "has a value <= 0"),
    Api("normalize: mean/std on the 0-255 scale", lambda e: normalize(e.raw, [125.3, 123.0, 113.9],
                                                                      [63.0, 62.1, 66.7]),
        ValueError, "look like statistics of 0-255 pixels"),
    Api("normalize: already normalised images", lambda e: normalize(e.x, [0.5] * 3, [0.25] * 3), ValueError,
        "normalize takes raw images"),
    Api("normalize: 2 mean values for 3 channels", lambda e: normalize(e.raw, [0.5] * 2, [0.25] * 2),
        ValueError, "2 mean/std values for images with 3 channels"),
    # checkpoints against the data
    Api("header without mean/std", lambda e: check_fits_data({"num_classes": 10}, 10), CheckpointError,
        "has no mean or std in its header"),
    Api("header without std", lambda e: check_fits_data({"num_classes": 10, "mean": [0.5] * 3}, 10),
        CheckpointError, "has no std in its header"),
    Api("header with std = 0", lambda e: check_fits_data({"num_classes": 10, "mean": [0.5] * 3,
                                                          "std": [0.0] * 3}, 10), CheckpointError, "<= 0"),
    Api("100-class model on CIFAR-10", lambda e: check_fits_data(
        {"num_classes": 100, "mean": [0.5] * 3, "std": [0.25] * 3}, 10, "cifar10"), CheckpointError,
        "100-class model, but cifar10 has 10 classes"),
    Api("checkpoint of random bytes", lambda e: read_checkpoint(e.files["random"]), CheckpointError,
        "is not an .npz (zip) archive"),
    Api("checkpoint is a folder", lambda e: read_checkpoint(e.files["folder"]), CheckpointError, "is a folder"),
    Api("checkpoint name is a folder", lambda e: resolve_checkpoint(e.files["folder"]), CheckpointError,
        "is a folder"),
    # resources, T, chunk
    Api("simulation too large (fast engine)", lambda e: check_memory(_snn(e), e.x, 10 ** 6, "fast", 10 ** 6,
                                                                      available=1 << 30),
        SimulationTooLarge, "use a smaller chunk (--chunk"),
    Api("simulation too large (reference engine)", lambda e: check_memory(_snn(e), e.x, 8, available=20000),
        SimulationTooLarge, "use a smaller batch (--batch-size 1 or less)"),
    Api("simulation too large for any batch", lambda e: check_memory(_snn(e), e.x, 8, available=100),
        SimulationTooLarge, "even one image at --chunk 1 does not fit"),
    Api("simulate refuses before allocating",
        lambda e: _little(lambda: run_sim(_snn(e), e.x, 10 ** 6, engine="fast", chunk=10 ** 6)),
        SimulationTooLarge, "would need about"),
    Api("T above 2**24", lambda e: simulate(_snn(e), e.x, MAX_T + 1), ValueError, "more than 16,777,216"),
    Api("T = 0", lambda e: simulate(_snn(e), e.x, 0), ValueError, "T must be a positive integer"),
    Api("T not an integer", lambda e: check_T(2.5), ValueError, "T must be a positive integer"),
    Api("chunk = 0", lambda e: run_sim(_snn(e), e.x, 4, engine="fast", chunk=0), ValueError,
        "chunk must be >= 1"),
    Api("p = nan in the config", lambda e: ConversionConfig(p=NAN).validate(), ValueError, "p must lie in"),
    # protocol
    Api("more calibration images than training images", lambda e: calibration_split(100, 101, 0), ValueError,
        "the training set has only 100"),
    Api("unknown test subset", lambda e: protocol.test_indices(100, 5, "middle"), ValueError,
        "unknown test subset"),
    Api("zero test images", lambda e: protocol.test_indices(100, 0), ValueError, "must be an integer >= 1"),
    # training settings (refused before the data is loaded or anything is written)
    Api("train_limit = 0", lambda e: train(TrainConfig(dataset="cifar10-slice", train_limit=0,
                                                       out=str(e.files["dir"] / "x.npz"))),
        ValueError, "train_limit (--train-limit, training images) must be an integer >= 1, got 0"),
    Api("train_limit < 0", lambda e: train(TrainConfig(dataset="cifar10-slice", train_limit=-5,
                                                       out=str(e.files["dir"] / "x.npz"))),
        ValueError, "got -5"),
    Api("training output is a folder", lambda e: train(TrainConfig(dataset="cifar10-slice",
                                                                   out=str(e.files["folder"]))),
        ValueError, "is an existing folder"),
    # importing PyTorch weights
    Api("flat Sequential with a wrong shape", lambda e: import_state_dict(
        _flat(build_model("vgg_cpu"), bad="16.weight"), "vgg_cpu", num_classes=10), CheckpointError,
        "'16.weight' (our 'classifier.0.weight') has shape (10, 5)"),
    Api("flat Sequential with NaN", lambda e: import_state_dict(
        _flat(build_model("vgg_cpu"), nan="5.bias"), "vgg_cpu"), CheckpointError,
        "'5.bias' (our 'features.5.bias') contains NaN or inf"),
    # ---- issue 25: the API refuses meaningless input where data enters --------------------
    Api("normalize: float images already divided by 255", lambda e: normalize(
        e.raw.astype(np.float32) / 255, [0.5] * 3, [0.25] * 3), ValueError,
        "normalize takes raw images, uint8 pixels 0..255, got float32: already normalised or "
        "divided by 255?"),
    Api("normalize: float pixels on the 0..255 scale", lambda e: normalize(
        e.raw.astype(np.float64), [0.5] * 3, [0.25] * 3), ValueError,
        "normalize takes raw images, uint8 pixels 0..255, got float64"),
    Api("normalize: complex images", lambda e: normalize(e.raw.astype(complex), [0.5] * 3, [0.25] * 3),
        ValueError, "normalize takes raw images, uint8 pixels 0..255, got complex128"),
    Api("normalize: a flat vector", lambda e: normalize(e.raw.reshape(4, -1), [0.5] * 3, [0.25] * 3),
        ValueError, "normalize takes raw images (N, C, H, W), got shape (4, 192)"),
    Api("label 3 for a 3-class model (ann_accuracy)", lambda e: ann_accuracy(e.model, e.x, [0, 1, 2, 3]),
        ValueError, "labels must lie in [0, 3) for a 3-class model, found 0 .. 3"),
    Api("label -1 (evaluate_conversion)", lambda e: evaluate_conversion(e.model, e.x, e.x, [0, 1, 2, -1],
                                                                        e.cfg),
        ValueError, "the test labels: labels must lie in [0, 3) for a 3-class model, found -1 .. 2"),
    Api("label 7 (snn_accuracy)", lambda e: snn_accuracy(_snn(e), e.x, [0, 1, 2, 7], 2, e.cfg),
        ValueError, "labels must lie in [0, 3)"),
    Api("64x64 images into vgg_cpu", lambda e: ann_accuracy(build_model("vgg_cpu"),
                                                           np.zeros((1, 3, 64, 64), np.float32), [0]),
        ValueError, "64\u00d764 images, but the model was built for 32\u00d732 images"),
    Api("16x16 images into an 8x8 model (spike_stats)",
        lambda e: spike_stats(e.model, _snn(e), np.zeros((2, 3, 16, 16), np.float32), 2),
        ValueError, "the image batch of spike_stats: 16\u00d716 images, but the model was built for 8\u00d78"),
    Api("16x16 images into an 8x8 model (evaluate_conversion)",
        lambda e: evaluate_conversion(e.model, e.x, np.zeros((4, 3, 16, 16), np.float32), e.y, e.cfg),
        ValueError, "the test batch (x_test): 16\u00d716 images, but the model was built for 8\u00d78"),
    Api("1-channel images into a 3-channel model", lambda e: ann_accuracy(e.model, e.x[:, :1], e.y),
        ValueError, "images with 1 channel, but the model takes 3"),
    Api("inputs x 1e38 (ann_accuracy)", lambda e: ann_accuracy(e.model, np.clip(e.x, -1, 1) * 1e38, e.y),
        ValueError, "the ANN's outputs on the image batch contain NaN or inf: inputs up to |x| = 1e+38"),
    Api("test inputs x 1e38 (evaluate_conversion)",
        lambda e: evaluate_conversion(e.model, e.x, np.clip(e.x, -1, 1) * 1e38, e.y, e.cfg),
        ValueError, "the ANN's outputs on the test batch (x_test) contain NaN or inf"),
    Api("inputs x 1e38 into the SNN (snn_accuracy)",
        lambda e: snn_accuracy(_snn(e), np.clip(e.x, -1, 1) * 1e38, e.y, 2, e.cfg), ValueError,
        "the SNN's first input currents on the test batch contain NaN or inf"),
    Api("rate coding: 2 mean values for 3 channels", lambda e: simulate(
        _snn(e), e.x, 2, coding="rate", mean=[0.5] * 2, std=[0.2] * 2), ValueError,
        "rate coding: mean/std hold 2/2 values for images with 3 channels"),
    Api("rate coding: a mean that is not numbers (evaluate_conversion)", lambda e: evaluate_conversion(
        e.model, e.x, e.x, e.y, ConversionConfig(T=(2,), n_calib=4, batch_size=4, coding="rate"),
        mean="abc", std=[0.2] * 3), ValueError, "rate coding: mean 'abc' and std [0.2, 0.2, 0.2] must be numbers"),
    Api("v(0) of another layer's shape", lambda e: simulate(_set(_snn(e), v0=np.zeros((5, 1, 1))), e.x, 2),
        ValueError, "V_th () / v(0) (5, 1, 1) do not fit the state (4, 4, 8, 8): a scalar, (C, 1, 1)"),
    Api("V_th of another layer's shape (fast engine)",
        lambda e: run_sim(_set(_snn(e), v_th=np.ones((5, 1, 1), np.float32)), e.x, 2, engine="fast"),
        ValueError, "V_th (5, 1, 1) / v(0) () do not fit the state"),
    Api("flat (C,) V_th where C equals the width (would vary along the width)",
        lambda e: simulate(_set(_snn8(), v_th=np.linspace(0.5, 2, 8)), e.x, 2),
        ValueError, "V_th (8,) / v(0) () do not fit the state (4, 8, 8, 8)"),
    Api("flat (C,) v(0) where C equals the width (fast engine)",
        lambda e: run_sim(_set(_snn8(), v0=np.zeros(8, np.float32)), e.x, 2, engine="fast"),
        ValueError, "V_th () / v(0) (8,) do not fit the state (4, 8, 8, 8)"),
    Api("header mean not numbers (check_fits_data)", lambda e: check_fits_data(
        {"num_classes": 10, "mean": "abc", "std": [0.2] * 3}, 10), CheckpointError,
        "header: mean 'abc' and std [0.2, 0.2, 0.2] must be numbers"),
    Api("header num_classes 'ten' (check_fits_data)", lambda e: check_fits_data(
        {"num_classes": "ten", "mean": [0.5] * 3, "std": [0.2] * 3}, 10), CheckpointError,
        "header field num_classes is 'ten': expected a positive integer"),
    Api("int8 tensor (read_checkpoint)", lambda e: read_checkpoint(e.files["int8"]), CheckpointError,
        "tensor features.0.weight is int8, not floating point"),
    Api("BatchNorm running variance < 0 (import_state_dict)", lambda e: import_state_dict(
        _negative_var(), "vgg_cpu_bn"), CheckpointError,
        "'features.1.running_var' (a BatchNorm running variance) has a negative value (-1)"),
    Api("partial file with a malformed entry (Partial)", lambda e: _partial_api(e.files["dir"]),
        ValueError, "measurement 'p|SNN|4' has steps = 9, not prerun + T = 4"),
    Api("a live run holds the output (exclusive)", lambda e: _held(e.files["dir"]), ValueError,
        "is in use by another run (pid"),
]


def _negative_var():
    sd = {k: np.array(v) for k, v in build_any("vgg_cpu_bn").state_dict().items()}
    sd["features.1.running_var"][0] = -1.0
    return sd


def _partial_api(d):
    path = d / "api.partial.json"
    path.write_text(json.dumps({"fingerprint": {"a": 1}, "done": {"p|SNN|4": dict(GOOD_ENTRY, steps=9)}}))
    try:
        Partial(path, {"a": 1}, resume=True, n_images=5)
    finally:
        path.unlink()


def _held(d):
    live_lock("api.lock")(None, d)
    try:
        with exclusive(d / "api"):
            pass
    finally:
        (d / "api.lock").unlink()


def _nan_linear():
    m = Sequential(Linear(2, 2, rng=np.random.default_rng(0)), ReLU(), Linear(2, 2))
    m[0].params["weight"][0, 0] = NAN
    return m


def _set(snn, **kw):
    for n in snn.nodes:
        for k, v in kw.items():
            setattr(n, k, v)
    return snn


def _little(call):
    """``call()`` while resources.available_memory reports 1 MiB."""
    real = resources.available_memory
    resources.available_memory = lambda xp=np: 1 << 20
    try:
        return call()
    finally:
        resources.available_memory = real


@pytest.mark.parametrize("c", API, ids=[c.case for c in API])
def test_api_bad_input_raises_a_clear_error(c, env, files):
    env.files = files
    before = _listing(files["dir"])
    with warnings.catch_warnings(), pytest.raises(c.exc) as info:
        warnings.simplefilter("error", RuntimeWarning)      # one line: no warning printed first
        c.call(env)
    assert c.msg in str(info.value)
    assert "\n" not in str(info.value)
    assert _listing(files["dir"]) == before                  # nothing written, no stray file


def test_random_bytes_do_not_suggest_allow_pickle(files):
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(files["random"])
    assert "pickle" not in str(info.value)


# --------------------------------------------------------------------------- importer
# nn.Sequential(conv, relu, conv, relu, pool, ..., flatten, linear): where the tensors are
FLAT_VGG_CPU = [0, 2, 5, 7, 10, 12, 16]


def _flat(model, bad=None, nan=None, index=FLAT_VGG_CPU):
    """``model``'s state_dict as a flat PyTorch nn.Sequential writes it: 0.weight, 0.bias, ...
    (``index``: the Sequential position of each of our modules that holds tensors)."""
    sd = model.state_dict()
    paths = list(dict.fromkeys(k.rpartition(".")[0] for k in sd))
    out = {}
    for k, v in sd.items():
        path, _, key = k.rpartition(".")
        name = f"{index[paths.index(path)]}.{key}"
        out[name] = np.array(v, dtype=np.float32)
        if key == "running_mean":
            out[f"{index[paths.index(path)]}.num_batches_tracked"] = np.array(7)
    if bad:
        out[bad] = out[bad][:, :5]
    if nan:
        out[nan][0] = NAN
    return out


def test_a_flat_sequential_state_dict_imports_by_order():
    """keys 0.weight, 0.bias, 2.weight, ..., 16.weight map onto features.* / classifier.*."""
    src = build_model("vgg_cpu", seed=7)
    flat = _flat(src)
    assert list(flat)[:3] == ["0.weight", "0.bias", "2.weight"] and list(flat)[-1] == "16.bias"
    model = import_state_dict(flat, "vgg_cpu")                 # num_classes read from 16.weight
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)
    # the same under a common name (model.net.0.weight ...) and with a DataParallel prefix
    prefixed = {f"module.net.{k}": v for k, v in flat.items()}
    assert set(match_state_dict(build_model("vgg_cpu"), prefixed)) == set(src.state_dict())


def test_a_flat_sequential_with_batchnorm_and_bias_free_convs_imports_by_order():
    """vgg_cpu_bn written flat: conv(no bias), BN, ReLU, ... ; BN statistics and
    num_batches_tracked as PyTorch saves them."""
    src = build_any("vgg_cpu_bn", seed=5)
    convs = [p for p, m in src.named_modules() if isinstance(m, Conv2d)]
    paths = list(dict.fromkeys(k.rpartition(".")[0] for k in src.state_dict()))
    index = [int(p.split(".")[1]) if p.startswith("features.") else 22 for p in paths]   # 21: Flatten
    flat = _flat(src, index=index)
    for p in convs:
        del flat[f"{p.split('.')[1]}.bias"]                  # bias=False before a BatchNorm
    assert "0.bias" not in flat and "1.num_batches_tracked" in flat and "22.weight" in flat
    model = import_state_dict(flat, "vgg_cpu_bn")
    for k, v in src.state_dict().items():
        want = np.zeros_like(v) if k.rpartition(".")[0] in convs and k.endswith(".bias") else v
        np.testing.assert_array_equal(model.state_dict()[k], want, err_msg=k)


# --------------------------------------------------------------------------- the import guide
class _Tensor:
    """Just what docs/import.md's export line calls on a torch tensor."""

    def __init__(self, a):
        self.a = a

    def detach(self):
        return self

    def cpu(self):
        return self

    def float(self):
        return _Tensor(self.a.astype(np.float32))

    def numpy(self):
        return self.a


class _TorchModel:
    def __init__(self, tensors):
        self.tensors = tensors

    def state_dict(self):
        return {k: _Tensor(v) for k, v in self.tensors.items()}


# What the test changes in the guide's code: a network small enough for a test (the guide's
# vgg16_bn has 34M parameters) and fewer images and steps for the statistics.
GUIDE_SMALLER = {'"vgg16_bn"': '"vgg_cpu_bn"', "x_test[:100], T=32": "x_test[:4], T=4"}


def test_the_import_guide_runs_as_written(tmp_path, monkeypatch):
    """Every python block of docs/import.md, in order, in one namespace: the export (with a
    stand-in for the torch model and for safetensors.torch), import, fold, convert, balance,
    statistics. Only the sizes in GUIDE_SMALLER change."""
    from icsnn_np.io.imports import save_safetensors
    text = (ROOT / "docs" / "import.md").read_text()
    for old, new in GUIDE_SMALLER.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    src = build_any("vgg_cpu_bn", seed=11)
    sd = {k: np.asarray(v) for k, v in src.state_dict().items()}
    sd["features.1.num_batches_tracked"] = np.array(3, dtype=np.int64)
    st = types.ModuleType("safetensors")
    st.torch = types.ModuleType("safetensors.torch")
    st.torch.save_file = lambda d, path: save_safetensors(path, {k: v.numpy() for k, v in d.items()})
    monkeypatch.setitem(sys.modules, "safetensors", st)
    monkeypatch.setitem(sys.modules, "safetensors.torch", st.torch)
    monkeypatch.chdir(tmp_path)
    ns = {"model": _TorchModel(sd)}
    for block in blocks:
        exec(compile(block, "docs/import.md", "exec"), ns)      # noqa: S102 - the guide's own code
    assert (tmp_path / "net.npz").is_file() and (tmp_path / "net.safetensors").is_file()
    assert all(float(np.max(n.v_th)) > 0 for n in ns["snn"].nodes)
    assert ns["d"]["T"] == 4 and ns["d"]["n_images"] == 4 and ns["d"]["total"]["sops"] >= 0


# --------------------------------------------------------------------------- one protocol
class _Seen(Exception):
    pass


@pytest.mark.parametrize("subset", ["first", "random"])
def test_demo_and_reproduce_use_the_same_images_for_the_same_flags(files, tmp_path, monkeypatch, subset):
    """Calibration: one seeded sample of the training set; test: the first n or a seeded
    random sample, in both CLIs (protocol.py), so the same flags print the same numbers."""
    seen = {}

    def capture(name):
        def f(model, x_calib, x_test, y_test, *a, **k):
            seen[name] = (np.asarray(x_calib), np.asarray(x_test), np.asarray(y_test))
            raise _Seen
        return f

    flags = ["--checkpoint", str(files["ckpt"]), "--dataset", "cifar10-slice", "--n-test", "7",
             "--n-calib", "9", "--seed", "3", "--test-subset", subset, "--T", "2"]
    monkeypatch.setattr(demo, "evaluate_conversion", capture("demo"))
    monkeypatch.setattr(reproduce, "sweep", capture("reproduce"))
    with pytest.raises(_Seen):
        demo.main(flags)
    with pytest.raises(_Seen):
        reproduce.main(flags + ["--out", str(tmp_path / "r")])
    for a, b in zip(seen["demo"], seen["reproduce"]):
        np.testing.assert_array_equal(a, b)
    ds = load_dataset("cifar10-slice")
    cal, _ = calibration_split(len(ds.x_train), 9, 3)
    idx = protocol.test_indices(len(ds.x_test), 7, subset, 3)
    h = load_checkpoint(files["ckpt"])[1]
    np.testing.assert_array_equal(seen["demo"][0], normalize(ds.x_train[cal], h["mean"], h["std"]))
    np.testing.assert_array_equal(seen["demo"][2], ds.y_test[idx])
    assert (list(idx) == list(range(7))) == (subset == "first")
    assert len(set(cal)) == 9 and list(cal) != list(range(9))   # seeded sample, not the first 9


# --------------------------------------------------------------------------- progress, memory
def test_a_long_evaluation_prints_an_eta_early(files, capsys, monkeypatch):
    """Progress lines with an ETA go to stderr while the simulations run (here after 0 s
    instead of 10, so a tiny run shows them)."""
    monkeypatch.setattr(progress, "FIRST_REPORT_S", 0.0)
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    rc = demo.main(_fill(BASE["demo"] + ["--T", "16", "--variants", "snn", "ic-snn"], files, "."))
    err = capsys.readouterr().err
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("progress:")]
    assert lines and all("ETA" in ln for ln in lines)
    assert "T=  16 ic-snn" in err and "ETA" in err.split("T=  16 ic-snn")[1].splitlines()[0]


@pytest.mark.parametrize("engine, chunk", [("reference", None), ("fast", 4), ("fast", 12)])
def test_the_memory_estimate_is_close_to_the_measured_peak(engine, chunk):
    model, _ = load_checkpoint(resolve_checkpoint("vgg_cpu"))
    snn = convert(model)
    x = np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32)
    run_sim(snn, x[:2], 2, engine=engine, chunk=chunk)              # warm caches and threads
    tracemalloc.start()
    try:
        run_sim(snn, x, 12, engine=engine, chunk=chunk, count=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    fixed, per_step, Tc = simulation_bytes(snn, x, 12, engine, chunk, count=True)
    estimate = len(x) * (fixed + Tc * per_step) * resources.MARGIN
    assert 0.7 * estimate < peak < 1.05 * estimate
