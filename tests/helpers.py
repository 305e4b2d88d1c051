"""Shared test helpers: tiny networks, inputs, a float64 gradient check, a direct conv.

Hypothesis strategies live in ``strategies.py``; everything else more than one test file
needs lives here, so every file builds the same little networks the same way.

Networks (float64 by default, biases drawn at random so bias bugs cannot hide at 0; each
builder draws weights then biases from one ``default_rng(seed)``, so a seed fixes them):

    tiny_vgg(seed)          conv IF pool conv IF flatten fc IF fc (a spiking FC layer)
    tiny_resnet(seed)       stem conv IF, identity block, projection block, pool, fc
    block_first_net(seed)   a residual block first (no linear layer before the first IF node)
    layer_zoo(seed)         a little of every layer (few- and many-channel convs, both block
                            kinds, both pools, fc) for layer and backend tests
    converted(name, seed)   one of NETS converted, thresholds balanced: (net, snn, x)
    converted_on(xp, name)  the same, built on the array module ``xp`` (device weights,
                            thresholds balanced on the device batch x)
    tiny_vgg_snn(seed)      a converted 2-channel tiny_vgg with set thresholds (1, .8, .6)
                            and two calibration batches: (snn, [x1, x2]) for Alg. 1-3
    tiny_resnet_snn(seed)   a converted tiny_resnet, thresholds balanced: (snn, [x1, x2])

Scripts: ``load_script(name)`` imports ``scripts/<name>.py`` (not part of the package).

Data: ``write_test_batch(folder, x, y, fmt)`` writes a CIFAR-10 test batch alone, official
binary (``test_batch.bin``) or python (``test_batch``) format, as the GPU check carries it;
``make_cifar(root, kind, archive)`` a tiny dataset in one of the four official formats
(``FOLDERS``), written byte by byte from the format descriptions on the CIFAR page.

Training: ``needs_slice`` skips a test while the bundled CIFAR-10 slice is not built;
``interrupting_evaluate(monkeypatch)`` makes a run stop (Ctrl-C) after its first epoch.

Inputs: ``images(n, hw, seed)`` normalised images (intensities in [0, 1], MEAN/STD).
"""
from __future__ import annotations

import importlib.util
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from icsnn_np.convert import layer_threshold
from icsnn_np.beyond.thresholds import channel_threshold
from icsnn_np.backend import to_device, to_host
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.io.data import SLICE_PATH, Dataset
from icsnn_np.layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from icsnn_np.models import BasicBlock
from icsnn_np.module import Sequential
from icsnn_np.runs import training as train_mod

F64 = np.float64
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)        # a normalisation for rate coding


# --------------------------------------------------------------------------- parameters
def random_biases(module, rng, scale=0.3):
    """Give every bias a random value (they start at 0, which would hide bias bugs)."""
    for _, m in module.named_modules():
        if "bias" in m.params:
            m.params["bias"][...] = rng.normal(0, scale, m.params["bias"].shape)
    return module


def buffer_names(model):
    """PyTorch-style names of every buffer (BatchNorm running statistics), in state_dict order."""
    return [f"{mname}.{k}" if mname else k
            for mname, mod in model.named_modules() for k in mod.buffers]


# --------------------------------------------------------------------------- networks
def tiny_vgg(seed=0, widths=(16, 4), in_channels=3, hw=4, hidden=6, classes=3, bias_scale=0.3,
             dtype=F64):
    """conv(in->w0) ReLU AvgPool(2) [conv(w0->w1) ReLU] Flatten fc(->hidden) ReLU fc(->classes).

    The default has a 3-channel first conv and a 16-channel second one (both im2col paths
    of the fast conv) and a spiking fully connected layer. ``widths`` of length 1 leaves out
    the second conv. ``bias_scale=None`` keeps the biases at 0.
    """
    rng = np.random.default_rng(seed)
    layers = [Conv2d(in_channels, widths[0], 3, 1, 1, rng=rng, dtype=dtype), ReLU(), AvgPool2d(2)]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [Conv2d(a, b, 3, 1, 1, rng=rng, dtype=dtype), ReLU()]
    feat = widths[-1] * (hw // 2) ** 2
    layers += [Flatten(), Linear(feat, hidden, rng=rng, dtype=dtype), ReLU(),
               Linear(hidden, classes, rng=rng, dtype=dtype)]
    net = Sequential(*layers)
    return net if bias_scale is None else random_biases(net, rng, bias_scale)


def tiny_resnet(seed=0, widths=(16, 8), in_channels=3, hw=4, pool=1, classes=3, bias_scale=0.3,
                dtype=F64):
    """conv(in->w0) ReLU, BasicBlock(w0, w0) (identity shortcut), BasicBlock(w0, w1, stride 2)
    (1x1 projection shortcut), AvgPool(pool), Flatten, fc(->classes)."""
    rng = np.random.default_rng(seed)
    w0, w1 = widths
    side = hw // 2 // pool
    net = Sequential(Conv2d(in_channels, w0, 3, 1, 1, rng=rng, dtype=dtype), ReLU(),
                     BasicBlock(w0, w0, 1, rng=rng, dtype=dtype),
                     BasicBlock(w0, w1, 2, rng=rng, dtype=dtype),
                     AvgPool2d(pool), Flatten(), Linear(w1 * side * side, classes, rng=rng, dtype=dtype))
    return net if bias_scale is None else random_biases(net, rng, bias_scale)


def block_first_net(seed=0, bias_scale=0.3, dtype=F64):
    """A projection block first (3->4, stride 2), pool, fc: no linear prefix, so direct
    coding feeds the image itself to the block at every step. Input (N, 3, 4, 4)."""
    rng = np.random.default_rng(seed)
    net = Sequential(BasicBlock(3, 4, 2, rng=rng, dtype=dtype), AvgPool2d(2), Flatten(),
                     Linear(4, 3, rng=rng, dtype=dtype))
    return net if bias_scale is None else random_biases(net, rng, bias_scale)


def layer_zoo(seed=0, dtype=F64):
    """A little of everything: few-channel conv, 16-channel conv, both block kinds, a
    non-overlapping and an overlapping pool, fc. Input (N, 3, 8, 8) -> (N, 5)."""
    rng = np.random.default_rng(seed)
    return random_biases(Sequential(
        Conv2d(3, 16, 3, 1, 1, rng=rng, dtype=dtype), ReLU(),
        Conv2d(16, 16, 3, 1, 1, rng=rng, dtype=dtype), ReLU(), AvgPool2d(2),
        BasicBlock(16, 16, 1, rng=rng, dtype=dtype), BasicBlock(16, 8, 2, rng=rng, dtype=dtype),
        AvgPool2d(2, 1), Flatten(), Linear(8, 5, rng=rng, dtype=dtype)), rng)


NETS = {"vgg": tiny_vgg, "resnet": tiny_resnet, "block_first": block_first_net}


def images(n=3, hw=4, seed=1, mean=MEAN, std=STD):
    """Normalised images (N, C, hw, hw), C = len(mean), whose intensities lie in [0, 1]."""
    c = len(mean)
    u = np.random.default_rng(seed).random((n, c, hw, hw))
    return (u - np.reshape(mean, (1, c, 1, 1))) / np.reshape(std, (1, c, 1, 1))


def converted(name, seed=0, p=0.9, n=3):
    """NETS[name] converted, thresholds balanced on ``images(n)``: (net, snn, x)."""
    net = NETS[name](seed)
    x = images(n=n)
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=p)
    return net, snn, x


def converted_on(xp, name, seed=0, p=0.9, n=3, channelwise=False):
    """``converted(name, seed, p, n)`` built on ``xp``: the network's weights on the device,
    thresholds balanced on the device batch; (net, snn, x), x on the device."""
    net = NETS[name](seed).to(xp)
    x = to_device(images(n=n), xp)
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=p, rule=channel_threshold if channelwise else layer_threshold)
    return net, snn, x


def tiny_vgg_snn(seed=0):
    """tiny_vgg(2 -> 3 -> 3 channels, fc 4, 2 classes) converted, thresholds 1.0, 0.8, 0.6,
    and two batches of three (2, 4, 4) images: (snn, [x1, x2])."""
    net = tiny_vgg(seed, widths=(3, 3), in_channels=2, hidden=4, classes=2, bias_scale=0.2)
    snn = convert(net)
    for node, th in zip(snn.nodes, (1.0, 0.8, 0.6)):
        node.v_th = th
    x = np.random.default_rng(seed + 7).normal(size=(6, 2, 4, 4))
    return snn, [x[:3], x[3:]]


def tiny_resnet_snn(seed=0):
    """tiny_resnet(3 -> 4 -> 8 channels, pool 2, zero biases) on (3, 8, 8) images, converted,
    thresholds balanced at p = 0.95: (snn, [x1, x2]). Five IF nodes, two residual blocks."""
    net = tiny_resnet(seed, widths=(4, 8), hw=8, pool=2, bias_scale=None)
    x = np.random.default_rng(seed + 1).normal(size=(6, 3, 8, 8))
    snn = convert(net)
    balance_thresholds(snn, net, [x], p=0.95)
    return snn, [x[:3], x[3:]]


def make_v0(snn, shapes, kind, seed=0):
    """v(0) per IF node: ``scalar`` (0.4 V_th), ``channel`` ((C, 1, 1) or (F,)) or ``neuron``,
    drawn in [-V_th, V_th]. ``shapes``: each node's neuron shape (without the batch axis)."""
    rng = np.random.default_rng(seed)
    out = []
    for node, shape in zip(snn.nodes, shapes):
        th = float(np.max(to_host(node.v_th)))          # V_th may be on the device
        if kind == "scalar":
            out.append(0.4 * th)
        elif kind == "channel":
            out.append(rng.uniform(-th, th, (shape[0],) + (1,) * (len(shape) - 1)))
        else:
            out.append(rng.uniform(-th, th, shape))
    return out


# --------------------------------------------------------------------------- arrays
def channels_last(x):
    """The same (N, C, H, W) values stored as an (N, H, W, C) buffer (what a fast conv returns)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def conv_direct(x, w, b, stride, padding):
    """A 2-D cross-correlation in float64 with windows + einsum (no loops, no im2col):
    y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * xpad[n, c, i*s+p, j*s+q]."""
    k = w.shape[-1]
    xpad = np.pad(np.asarray(x, F64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(xpad, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]  # (N,C,Ho,Wo,k,k)
    y = np.einsum("nchwpq,ocpq->nohw", win, np.asarray(w, F64))
    return y if b is None else y + np.asarray(b, F64)[None, :, None, None]


# --------------------------------------------------------------------------- gradient check
EPS = 1e-5            # perturbation; exact for piecewise-linear maps, small enough to rarely cross a kink
RTOL = 1e-6           # max |analytic - numeric| / max |gradient| over the checked coordinates
MAX_COORDS = 64       # coordinates checked one by one per tensor (plus one random direction)


class GradCheck:
    """Compare a module's backward with central differences of L = sum(forward(x) * R).

    Use float64 modules and inputs. Every layer here is piecewise linear in each single
    input or parameter, so central differences are exact up to rounding as long as a
    perturbation does not carry a ReLU pre-activation across 0; such a perturbation is
    detected (a ReLU mask changes) and that coordinate is left out, not reported.
    """

    def __init__(self, module, x, rng):
        assert np.asarray(x).dtype == F64, "gradient checks run in float64"
        self.module, self.x, self.rng = module.train(), x, rng
        self.relus = [m for _, m in module.named_modules() if isinstance(m, ReLU)]
        module.zero_grad()                      # grads accumulate (+=)
        out = module.forward(x)
        assert out.dtype == F64, "gradient checks run in float64"
        self.R = rng.normal(size=out.shape)
        self.base_masks = self._masks()
        self.dx = np.array(module.backward(self.R))
        self.grads = {name: np.array(m.grads[k]) for name, m, k in module.named_parameters()}
        assert self.dx.shape == x.shape
        self.checked = self.attempted = 0

    def _masks(self):
        return [np.array(r._mask) for r in self.relus]

    def _loss(self):
        """L at the current values, or None when some ReLU changed side (a kink was crossed)."""
        loss = float(np.sum(self.module.forward(self.x) * self.R))
        if any(not np.array_equal(a, b) for a, b in zip(self._masks(), self.base_masks)):
            return None
        return loss

    def _numeric(self, arr, direction):
        """(L(a + eps d) - L(a - eps d)) / 2 eps, perturbing ``arr`` in place; None at a kink."""
        old = arr.copy()
        arr += EPS * direction
        lp = self._loss()
        arr[...] = old - EPS * direction
        lm = self._loss()
        arr[...] = old
        return None if lp is None or lm is None else (lp - lm) / (2 * EPS)

    def check(self, arr, analytic, label):
        assert analytic.shape == arr.shape, label
        n = arr.size
        coords = self.rng.choice(n, size=min(n, MAX_COORDS), replace=False)
        got, want = [], []
        for c in coords:
            d = np.zeros(arr.shape)
            d.flat[c] = 1.0
            num = self._numeric(arr, d)
            if num is not None:
                got.append(analytic.flat[c])
                want.append(num)
        d = self.rng.normal(size=arr.shape)          # one random direction: every coordinate
        num = self._numeric(arr, d)
        if num is not None:
            got.append(np.sum(analytic * d))
            want.append(num)
        self.attempted += len(coords) + 1
        got, want = np.array(got), np.array(want)
        scale = max(np.abs(want).max(initial=0), np.abs(got).max(initial=0), 1e-8)
        err = np.abs(got - want).max(initial=0) / scale
        assert err < RTOL, f"{label}: relative error {err:.3g}\nanalytic {got}\nnumeric  {want}"
        self.checked += len(got)

    def check_all(self):
        """Input gradient and every parameter gradient."""
        self.check(self.x, self.dx, "input")
        for name, m, k in self.module.named_parameters():
            self.check(m.params[k], self.grads[name], name)
        # a kink crossing is rare with EPS this small: nearly every coordinate is checked
        assert self.checked >= self.attempted // 2, f"only {self.checked}/{self.attempted} checked"


def gradcheck(module, x, rng):
    """Backward of ``module`` (float64) equals central differences, input and parameters."""
    GradCheck(module, x, rng).check_all()


def check_backward_without_input_grad(conv, c_in, k, stride, rng):
    """``backward(g, input_grad=False)`` of a (nested) two-conv net built from the class
    ``conv`` returns None and gives every parameter the full backward's gradient (a training
    step does not need dL/dx of the data, so the first conv skips it)."""
    def net():
        r = np.random.default_rng(5)
        return random_biases(Sequential(Sequential(conv(c_in, 16, k, stride, k // 2, rng=r, dtype=F64),
                                                   ReLU(), conv(16, 4, 3, 1, 1, rng=r, dtype=F64)),
                                        Flatten()), r)
    x = rng.normal(size=(2, c_in, 6, 6))
    a, b = net().train(), net().train()
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    g = rng.normal(size=ya.shape)
    assert a.backward(g, input_grad=False) is None
    assert b.backward(g).shape == x.shape
    for (n, m, key), (_, m2, _) in zip(a.named_parameters(), b.named_parameters()):
        assert np.any(m.grads[key]), n
        np.testing.assert_array_equal(m.grads[key], m2.grads[key], err_msg=n)


def load_script(name):
    """A script of ``scripts/`` as a module (they are not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_test_batch(folder, x, y, fmt="bin"):
    """``folder`` holding a CIFAR-10 test batch alone (no training batches, no meta file) with
    images ``x`` (N, 3, 32, 32) uint8 and labels ``y``: official binary format (test_batch.bin:
    per image one label byte, then the R, G, B planes) or python (test_batch: a pickled dict,
    data (N, 3072) uint8, labels a list). Returns the file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, y = np.asarray(x, np.uint8), np.asarray(y)
    if fmt == "bin":
        path, blob = folder / "test_batch.bin", np.concatenate(
            [y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1).tobytes()
    else:
        path, blob = folder / "test_batch", pickle.dumps(
            {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in y],
             b"data": x.reshape(len(x), -1), b"filenames": [b"f.png"] * len(y)}, protocol=2)
    path.write_bytes(blob)
    return path


# --------------------------------------------------------------------------- running
def run_sim(snn, x, T, engine="reference", chunk=None, prerun=None, **kw):
    """A simulation as the runs layer makes it (``runs.engine.use_engine``: the engine by name,
    the memory check, progress), after ``prerun``'s steps when one is given (beyond/prerun.py)."""
    from icsnn_np.beyond.prerun import simulate_prerun
    from icsnn_np.runs.engine import use_engine
    use_engine(snn, engine, chunk)
    return snn.run(x, T, **kw) if prerun is None else simulate_prerun(snn, x, T, prerun, **kw)


def avgpool2d_naive(x, kernel_size, stride=None):
    """Average pooling with explicit loops: the slow, obvious reference of AvgPool2d."""
    x = np.asarray(x)
    s, k = stride or kernel_size, kernel_size
    N, C, H, W = x.shape
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    y = np.zeros((N, C, Ho, Wo), dtype=np.float64)
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    y[n, c, i, j] = x[n, c, i * s:i * s + k, j * s:j * s + k].mean()
    return y


# --------------------------------------------------------------------------- CIFAR files
NAMES10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]


# --------------------------------------------------------------------------- fixture writers
class Py2Pickler(pickle._Pickler):
    """Pickles like Python 2's cPickle did for the official files: protocol 2, every str and
    bytes as a BINSTRING (loaded back as bytes with encoding="bytes")."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        b = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(b) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(b)]) + b)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(b)) + b)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    """An official-style pickle, with NumPy 1's module path as in the real files."""
    f = io.BytesIO()
    Py2Pickler(f, protocol=2).dump(obj)
    return f.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def _records(x: np.ndarray, y: np.ndarray, coarse: bool = False) -> bytes:
    """Binary version: per image [coarse label byte,] label byte, then R, G, B planes."""
    head = (lambda l: bytes([l // 5, l])) if coarse else (lambda l: bytes([l]))
    return b"".join(head(int(label)) + img.tobytes() for img, label in zip(x, y))


def _batch(x: np.ndarray, y: np.ndarray, label_key: bytes) -> bytes:
    """Python version: a dict with byte-string keys, data (N, 3072) uint8, labels a list."""
    return py2_pickle({b"batch_label": b"fixture", label_key: [int(v) for v in y],
                    b"data": x.reshape(len(x), -1), b"filenames": [b"f.png"] * len(y)})


FOLDERS = {"c10bin": ("cifar-10-batches-bin", "cifar-10-binary.tar.gz"),
           "c10py": ("cifar-10-batches-py", "cifar-10-python.tar.gz"),
           "c100py": ("cifar-100-python", "cifar-100-python.tar.gz"),
           "c100bin": ("cifar-100-binary", "cifar-100-binary.tar.gz")}


def make_cifar(root: Path, kind: str, archive: bool = False, seed: int = 0) -> Dataset:
    """Write a tiny dataset in official format `kind` (a FOLDERS key) under `root`.

    Files go in the official folder, or into the official archive (members under that folder)
    when `archive` is true. Returns the Dataset the files hold.
    """
    rng = np.random.default_rng(seed)
    k = 100 if kind.startswith("c100") else 10
    n_files, n_per, n_test = (5, 6, 4) if k == 10 else (1, 13, 5)
    xs = [rng.integers(0, 256, (n_per, 3, 32, 32), dtype=np.uint8) for _ in range(n_files)]
    ys = [rng.integers(0, k, n_per) for _ in range(n_files)]
    xt, yt = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8), rng.integers(0, k, n_test)
    names = NAMES10 if k == 10 else [f"fine{i}" for i in range(k)]
    if kind == "c10bin":
        files = {f"data_batch_{i + 1}.bin": _records(xs[i], ys[i]) for i in range(5)}
        files["test_batch.bin"] = _records(xt, yt)
        files["batches.meta.txt"] = ("\n".join(names) + "\n\n").encode()
    elif kind == "c100bin":
        files = {"train.bin": _records(xs[0], ys[0], True), "test.bin": _records(xt, yt, True),
                 "fine_label_names.txt": "\n".join(names).encode(),
                 "coarse_label_names.txt": "\n".join(f"c{i}" for i in range(20)).encode()}
    elif kind == "c10py":
        files = {f"data_batch_{i + 1}": _batch(xs[i], ys[i], b"labels") for i in range(5)}
        files["test_batch"] = _batch(xt, yt, b"labels")
        files["batches.meta"] = py2_pickle({b"label_names": [n.encode() for n in names],
                                         b"num_vis": 3072, b"num_cases_per_batch": n_per})
    else:
        files = {"train": _batch(xs[0], ys[0], b"fine_labels"),
                 "test": _batch(xt, yt, b"fine_labels"),
                 "meta": py2_pickle({b"fine_label_names": [n.encode() for n in names],
                                  b"coarse_label_names": [b"c"] * 20})}
    folder, archive_name = FOLDERS[kind]
    root.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(root / archive_name, "w:gz") as tar:
            for name, blob in files.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        (root / folder).mkdir()
        for name, blob in files.items():
            (root / folder / name).write_bytes(blob)
    return Dataset("cifar10" if k == 10 else "cifar100", np.concatenate(xs),
                   np.concatenate(ys).astype(np.int64), xt, yt.astype(np.int64), names)


# --------------------------------------------------------------------------- training
needs_slice = pytest.mark.skipif(not SLICE_PATH.is_file(), reason=f"{SLICE_PATH} not built yet")


def interrupting_evaluate(monkeypatch, after_calls=1):
    """train's per-epoch scoring (validation, then test: two calls an epoch) raises
    KeyboardInterrupt in epoch ``after_calls + 1``: the run stops after the checkpoints of
    epoch ``after_calls`` were written, mid epoch after."""
    real, calls = train_mod.evaluate, []

    def evaluate(*a, **k):
        calls.append(1)
        if len(calls) > 2 * after_calls:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "evaluate", evaluate)
