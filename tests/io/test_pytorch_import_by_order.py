"""Importing PyTorch weights (icsnn_np.io.imports; issue 14): a flat ``nn.Sequential``
state_dict imports by order, the import guide's code (docs/import.md) runs as written, and
bad state_dicts are one clear error (shared checks: tests/bad_input.py).
"""
from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

from bad_input import ROOT, NAN, Api, check_api_case

from icsnn_np.io.batchnorm import build_any
from icsnn_np.io.checkpoint import CheckpointError
from icsnn_np.io.imports import import_state_dict, match_state_dict
from icsnn_np.layers import Conv2d
from icsnn_np.models import build_model


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


def _negative_var():
    sd = {k: np.array(v) for k, v in build_any("vgg_cpu_bn").state_dict().items()}
    sd["features.1.running_var"][0] = -1.0
    return sd


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


API = [
    # importing PyTorch weights
    Api("flat Sequential with a wrong shape", lambda e: import_state_dict(
        _flat(build_model("vgg_cpu"), bad="16.weight"), "vgg_cpu", num_classes=10), CheckpointError,
        "'16.weight' (our 'classifier.0.weight') has shape (10, 5)"),
    Api("flat Sequential with NaN", lambda e: import_state_dict(
        _flat(build_model("vgg_cpu"), nan="5.bias"), "vgg_cpu"), CheckpointError,
        "'5.bias' (our 'features.5.bias') contains NaN or inf"),
    Api("BatchNorm running variance < 0 (import_state_dict)", lambda e: import_state_dict(
        _negative_var(), "vgg_cpu_bn"), CheckpointError,
        "'features.1.running_var' (a BatchNorm running variance) has a negative value (-1)"),
]


@pytest.mark.parametrize("c", API, ids=[c.case for c in API])
def test_api_bad_input_raises_a_clear_error(c, env, files):
    check_api_case(c, env, files)
