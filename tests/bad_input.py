"""What the bad-input tests share (issue 14 and 25): the files a user may name (good and bad
checkpoints, results, repacked archives), the patches and setups of a case, and the checks of
one case of a CLI table or of an API table.

The tables themselves live beside the modules they guard (tests/cli/test_bad_input_*.py,
tests/io/test_bad_*.py, tests/runs/test_bad_*.py, tests/core/test_bad_input_api.py,
tests/scripts/, tests/bench/): each holds a ``CLI`` list of ``Cli`` cases, (case, command,
arguments, exit code, part of the message), run by ``check_cli_case``: the command's
``main(argv)`` in-process, exit 2 for bad input, 130 for Ctrl-C (a function patched to raise
KeyboardInterrupt), exactly one line on stderr starting with ``error:`` (the only line, when the
argument is refused before any work starts) and no traceback; and/or an ``API`` list of ``Api``
cases, (case, call, exception type, part of the message), run by ``check_api_case``. The
fixtures ``files`` and ``env`` (tests/conftest.py) are built here. Everything runs on the
bundled slice, tiny sizes: seconds in all.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import types
import warnings
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest

from helpers import load_script

from icsnn_np.bench import __main__ as bench_cli
from icsnn_np.cli import compare, demo, reproduce, train as train_cli
from icsnn_np.runs import demo as demo_run
from icsnn_np.convert import convert
from icsnn_np.io.checkpoint import load_checkpoint, save_checkpoint
from icsnn_np.io.data import default_data_dir, load_dataset
from icsnn_np.io.preprocess import channel_stats
from icsnn_np.layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from icsnn_np.models import build_model
from icsnn_np.module import Sequential
from icsnn_np.runs import resources, training as train_mod
from icsnn_np.runs.evaluate import ConversionConfig

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")


build_slice, bundle_model = load_script("build_slice"), load_script("bundle_model")
depth_table, merge_results = load_script("depth_table"), load_script("merge_results")
gpu_check = load_script("gpu_check")


# --------------------------------------------------------------------------- files


def make_files(d):
    """Checkpoints good and bad (an untrained vgg_cpu with the slice's normalisation) and
    other things a user may name: a folder, random bytes, a truncated archive, a .npy."""
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


def raises(exc):
    def f(*a, **k):
        raise exc
    return f


def ctrl_c(module, name):
    """A patch: ``module.name`` raises KeyboardInterrupt (the user presses Ctrl-C there)."""
    return lambda mp: mp.setattr(module, name, raises(KeyboardInterrupt()))


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
    mp.setattr(demo_run, "bundled_models", lambda: {})


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


def resume_state(**change):
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


def truncated_resume(files, tmp):
    resume_files(resume_state())(files, tmp)
    return (tmp / "t_resume.npz").read_bytes()[:200]


def partial_file(entries: dict):
    """{tmp}/res.partial.json of the BASE reproduce run (its fingerprint) with ``entries``."""
    def setup(files, tmp):
        a = reproduce.parse_args(fill(BASE["reproduce"] + ["--resume"], files, tmp))
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
                "--n-calib", "5", "--T", "2", "--variants", "snn", "--thresholds", "layer",
                "--batch-size", "5", "--out", "{tmp}/cmp"],
    "depth_table": [],
    "merge_results": ["--out", "{tmp}/merged"],
    "gpu_check": ["--standin", "--skip-tests", "--out", "{tmp}/gc"],
}


def fill(args, files, tmp):
    names = {k: str(v) for k, v in files.items()} | {"tmp": str(tmp)}
    return [a.format(**names) for a in args]


def listing(*folders):
    return {p for d in folders for p in Path(d).rglob("*")}


def check_cli_case(c, files, tmp_path, capsys, monkeypatch):
    """One case of a CLI table: exit code, one ``error:`` line holding the message, no
    traceback; refused (exit 2): nothing written; what the user had: kept."""
    argv = (BASE[c.command] if c.base else []) + c.argv
    if c.patch:
        c.patch(monkeypatch)
    if c.setup:
        c.setup(files, tmp_path)
    had = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    before = listing(files["dir"], tmp_path)
    rc = MAINS[c.command](fill(argv, files, tmp_path))
    out, err = capsys.readouterr()
    assert rc == c.code, err
    assert "Traceback" not in err + out
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0], err
    assert fill([c.msg], files, tmp_path)[0] in errors[0], errors[0]
    if c.alone:
        assert err.strip() == errors[0], err
    if c.code == 2:      # refused: nothing written, no stray file (a log may have been started)
        assert {p for p in listing(files["dir"], tmp_path) - before if p.suffix != ".txt"} == set()
    assert {p: p.read_bytes() for p in had if p.is_file()} == had     # what the user had: kept


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


# --------------------------------------------------------------------------- API table


def make_env():
    """A tiny network (conv, ReLU, pool, linear) on 8x8 images, and a normalised batch."""
    rng = np.random.default_rng(0)
    model = Sequential(Conv2d(3, 4, 3, padding=1, rng=rng), ReLU(), AvgPool2d(2), Flatten(),
                       Linear(64, 3, rng=rng))
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 0])
    raw = rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    return types.SimpleNamespace(model=model, x=x, y=y, raw=raw,
                                 cfg=ConversionConfig(T=(2,), n_calib=4, batch_size=4))


def replaced(x, idx, value):
    x = x.copy()
    x[idx] = value
    return x


def snn8():
    """A converted conv of 8 channels on the env's 8x8 images: a state (4, 8, 8, 8), C = W."""
    rng = np.random.default_rng(3)
    snn = convert(Sequential(Conv2d(3, 8, 3, padding=1, rng=rng), ReLU(), Flatten(), Linear(512, 3, rng=rng)))
    snn.nodes[0].v_th = 1.0
    return snn


def snn_of(e, v_th=1.0):
    snn = convert(e.model)
    for n in snn.nodes:
        n.v_th = v_th
    return snn


def set_on(snn, **kw):
    for n in snn.nodes:
        for k, v in kw.items():
            setattr(n, k, v)
    return snn


class Api(NamedTuple):
    case: str
    call: Callable
    exc: type
    msg: str


def check_api_case(c, env, files):
    """One case of an API table: the exception type, its one-line message; nothing written."""
    env.files = files
    before = listing(files["dir"])
    with warnings.catch_warnings(), pytest.raises(c.exc) as info:
        warnings.simplefilter("error", RuntimeWarning)      # one line: no warning printed first
        c.call(env)
    assert c.msg in str(info.value)
    assert "\n" not in str(info.value)
    assert listing(files["dir"]) == before                  # nothing written, no stray file
