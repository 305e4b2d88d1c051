"""Importing PyTorch state_dicts (.npz, .safetensors written by hand), name mapping, errors."""
import json
import struct
from collections import OrderedDict

import numpy as np
import pytest

from icsnn_np.io.batchnorm import BatchNorm2d, build_any, fold_batchnorm
from icsnn_np.io.checkpoint import CheckpointError
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.layers import Conv2d
from icsnn_np.io.imports import (bf16_to_float32, float32_to_bf16, import_state_dict,
                              load_pytorch_state_dict, read_safetensors, read_state_dict,
                              save_safetensors)
from icsnn_np.models import build_model
from icsnn_np.simulate import simulate

X = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        for store in (m.params, m.buffers):
            for k, v in store.items():
                if k == "running_var":
                    v[...] = rng.uniform(0.5, 2.0, v.shape)
                elif isinstance(m, BatchNorm2d) and k == "weight":
                    v[...] = rng.uniform(0.5, 1.5, v.shape)
                elif k != "weight":
                    v[...] = rng.normal(0, 0.2, v.shape)
    return model.eval()


def torch_like_export(model):
    """The tensors and names ``model.state_dict()`` of the same network in PyTorch would have:
    per module parameters, then buffers, each BatchNorm with its int64 num_batches_tracked."""
    out = OrderedDict()
    for name, arr in model.state_dict().items():
        out[name] = np.asarray(arr)
        if name.endswith(".running_var"):
            out[name[:-len("running_var")] + "num_batches_tracked"] = np.array(1234, np.int64)
    return out


# --------------------------------------------------------------------------- safetensors
def test_safetensors_by_hand_and_dtypes(tmp_path):
    """A file built byte by byte (not by our writer) reads back, all dtypes."""
    f64 = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    f16 = np.array([1.5, -2.25, 65504], np.float16)
    i64 = np.array(7, np.int64)
    bf = np.array([0x3F80, 0xC000, 0x4049, 0x0000], np.uint16)        # 1, -2, 3.140625, 0
    blobs = [("a", "F64", f64), ("b", "F16", f16), ("n", "I64", i64), ("c", "BF16", bf)]
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, code, a in blobs:
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    path = tmp_path / "hand.safetensors"
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)
    t, meta = read_safetensors(path)
    assert meta == {"format": "pt"} and list(t) == ["a", "b", "n", "c"]
    np.testing.assert_array_equal(t["a"], f64)
    np.testing.assert_array_equal(t["b"], f16)
    assert t["n"].shape == () and t["n"] == 7 and t["n"].dtype == np.int64
    np.testing.assert_array_equal(t["c"], np.array([1.0, -2.0, 3.140625, 0.0], np.float32))
    # our writer: 8-byte aligned header, readable, BF16 rounding to nearest even
    vals = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -0.1], np.float32)
    np.testing.assert_array_equal(float32_to_bf16(vals)[:3], [0x3F80, 0x3F80, 0x3F82])
    p2 = save_safetensors(tmp_path / "w.safetensors",
                          {"x": f64.astype(np.float32), "y": ("BF16", vals), "z": np.array([True, False])})
    raw = p2.read_bytes()
    assert struct.unpack("<Q", raw[:8])[0] % 8 == 0
    t2, _ = read_safetensors(p2)
    np.testing.assert_array_equal(t2["x"], f64.astype(np.float32))
    np.testing.assert_array_equal(t2["y"], bf16_to_float32(float32_to_bf16(vals)))
    assert abs(t2["y"][3] + 0.1) < 1e-3 and t2["z"].tolist() == [True, False]


def test_safetensors_damage(tmp_path):
    good = save_safetensors(tmp_path / "g.safetensors", {"w": np.ones((2, 2), np.float32)}).read_bytes()
    cases = {
        "short": good[:5],
        "truncated": good[:-4],
        "hugeheader": struct.pack("<Q", 1 << 40) + good[8:],
        "badjson": good[:8] + b"x" + good[9:],
    }
    msgs = {"short": "too short", "truncated": "tensor 'w'", "hugeheader": "header length",
            "badjson": "not valid JSON"}
    for name, blob in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(blob)
        with pytest.raises(CheckpointError, match=msgs[name]):
            read_safetensors(p)
    h = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}).encode()
    p = tmp_path / "f8.safetensors"
    p.write_bytes(struct.pack("<Q", len(h)) + h + b"\0")
    with pytest.raises(CheckpointError, match="'w' has dtype F8_E4M3"):
        read_safetensors(p)
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x02")
    with pytest.raises(CheckpointError, match="docs/import.md"):
        read_state_dict(pt)


# --------------------------------------------------------------------------- whole networks
@pytest.mark.parametrize("arch", ["vgg_cpu_bn", "resnet20_bn"])
@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_import_export_like_file(tmp_path, arch, fmt):
    ours = randomize(build_any(arch, num_classes=7), seed=1)
    sd = torch_like_export(ours)
    path = tmp_path / f"net.{fmt}"
    if fmt == "npz":
        np.savez(path, **sd)
    else:
        save_safetensors(path, sd, metadata={"format": "pt"})
    got = load_pytorch_state_dict(path, arch)               # num_classes read from the file
    assert got.children["flatten"] is not None and not got.training
    np.testing.assert_array_equal(got.forward(X), ours.forward(X))
    folded = load_pytorch_state_dict(path, arch, num_classes=7, fold=True)
    np.testing.assert_allclose(folded.forward(X), ours.forward(X), rtol=1e-4, atol=1e-4)


def test_name_variants_and_conv_biases():
    """module. prefix, Dropout-shifted head indices, a bare Linear head, linear->fc and
    downsample->shortcut, and conv biases before BN present or absent."""
    vgg = randomize(build_any("vgg_cpu_bn"), seed=2)
    sd = torch_like_export(vgg)
    head = {k: sd.pop(k) for k in ["classifier.0.weight", "classifier.0.bias"]}
    conv_biases = [k for k in sd if k.startswith("features.") and k.endswith(".bias")
                   and k.replace("bias", "running_mean") not in sd]
    for k in conv_biases:                            # convs with bias=False before their BN
        del sd[k]
    sd["classifier.1.weight"], sd["classifier.1.bias"] = head.values()   # nn.Dropout at 0
    sd = OrderedDict(("module." + k, v) for k, v in sd.items())
    got = import_state_dict(sd, "vgg_cpu_bn", 10)
    for _, m in vgg.named_modules():                 # a bias-free conv before BN: zero bias
        if isinstance(m, Conv2d):
            m.params["bias"][...] = 0
    np.testing.assert_array_equal(got.forward(X), vgg.forward(X))
    bare = torch_like_export(vgg)
    for k in ("weight", "bias"):                     # classifier = nn.Linear, not nn.Sequential
        bare[f"classifier.{k}"] = bare.pop(f"classifier.0.{k}")
    np.testing.assert_array_equal(import_state_dict(bare, "vgg_cpu_bn").forward(X), vgg.forward(X))

    res = randomize(build_any("resnet20_bn"), seed=3)
    sd = OrderedDict()
    rng = np.random.default_rng(4)
    for k, v in torch_like_export(res).items():
        k = k.replace("fc.", "linear.").replace("shortcut.", "downsample.")
        sd[k] = v
        if k == "conv1.weight":                       # a conv bias before BN (bias=True)
            b = rng.normal(0, 0.5, v.shape[0]).astype(np.float32)
            sd["conv1.bias"] = b
    sd["bn1.running_mean"] = sd["bn1.running_mean"] + sd["conv1.bias"]
    got = import_state_dict(sd, "resnet20_bn")
    np.testing.assert_allclose(got.forward(X), res.forward(X), rtol=1e-5, atol=1e-5)


def test_errors_name_the_tensor(tmp_path):
    base = torch_like_export(randomize(build_any("vgg_cpu_bn"), seed=5))

    def load(sd, **kw):
        return import_state_dict(sd, "vgg_cpu_bn", 10, source="net.npz", **kw)

    sd = OrderedDict(base)
    del sd["features.4.running_var"]
    with pytest.raises(CheckpointError,
                       match=r"net.npz: missing tensor 'features.4.running_var' \(shape \(32,\)\)"):
        load(sd)
    sd = OrderedDict(base)
    sd["features.3.weight"] = sd["features.3.weight"][:, :16]
    with pytest.raises(CheckpointError, match=r"'features.3.weight' has shape \(32, 16, 3, 3\), "
                                              r"model expects \(32, 32, 3, 3\)"):
        load(sd)
    sd = OrderedDict(base)
    sd["features.1.extra"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match="unexpected tensor 'features.1.extra'"):
        load(sd)
    sd = OrderedDict(base)
    sd["features.0.weight"] = sd["features.0.weight"].astype(np.int64)
    with pytest.raises(CheckpointError, match="dtype int64"):
        load(sd)
    sd = OrderedDict(base)
    sd["features.1.bias"] = sd["features.1.bias"].copy()
    sd["features.1.bias"][0] = np.nan
    with pytest.raises(CheckpointError, match="'features.1.bias' contains NaN"):
        load(sd)
    with pytest.raises(CheckpointError,
                       match=r"'classifier.0.weight' has shape \(10, 2048\), model expects \(5, 2048\)"):
        import_state_dict(base, "vgg_cpu_bn", 5)
    with pytest.raises(CheckpointError, match="missing tensor 'conv1.weight'"):
        import_state_dict(base, "resnet20_bn")
    with pytest.raises(CheckpointError, match="missing tensor 'features.2.weight'.*try arch 'vgg_cpu_bn'"):
        import_state_dict(base, "vgg_cpu")
    with pytest.raises(ValueError, match="unknown model"):
        import_state_dict(base, "vgg99")
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in base.items() if k != "classifier.0.bias"})
    with pytest.raises(CheckpointError, match="bad.npz: missing tensor 'classifier.0.bias'"):
        load_pytorch_state_dict(tmp_path / "bad.npz", "vgg_cpu_bn")


# --------------------------------------------------------------------------- real PyTorch
def _torch_models(torch):
    nn = torch.nn

    class VGGBN(nn.Module):
        """The vgg_cpu_bn network in PyTorch."""

        def __init__(self, cfg=(32, 32, "A", 64, 64, "A", 128, 128, "A"), num_classes=10):
            super().__init__()
            layers, c = [], 3
            for v in cfg:
                if v == "A":
                    layers.append(nn.AvgPool2d(2))
                else:
                    layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                    c = v
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Linear(c * 16, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x), 1))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Sequential()
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    class ResNet20(nn.Module):
        """kuangliu-style CIFAR ResNet-20 (``linear`` head) with projection shortcuts."""

        def __init__(self, num_classes=10):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            c, stages = 16, []
            for s, w in enumerate((16, 32, 64)):
                blocks = []
                for b in range(3):
                    blocks.append(Block(c, w, 2 if (s > 0 and b == 0) else 1))
                    c = w
                stages.append(nn.Sequential(*blocks))
            self.layer1, self.layer2, self.layer3 = stages
            self.linear = nn.Linear(64, num_classes)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.layer3(self.layer2(self.layer1(out)))
            out = torch.nn.functional.avg_pool2d(out, 8)
            return self.linear(torch.flatten(out, 1))

    return VGGBN, ResNet20


def _trained_stats(torch, net, seed):
    """Non-trivial running statistics (a few train-mode passes) and affine BN parameters."""
    g = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for i in range(3):
            net(torch.randn(8, 3, 32, 32, generator=g) * (1 + i) + 0.5)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
    return net.eval()


@pytest.mark.parametrize("which", ["vgg_cpu_bn", "resnet20_bn"])
def test_real_pytorch_export(tmp_path, which):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: the real-export test is skipped")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    VGGBN, ResNet20 = _torch_models(torch)
    net = _trained_stats(torch, VGGBN() if which == "vgg_cpu_bn" else ResNet20(), seed=1)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = net(x).numpy()
    # the two export lines of docs/import.md
    sd = net.state_dict()
    np.savez(tmp_path / "net.npz", **{k: v.detach().cpu().float().numpy() for k, v in sd.items()})
    try:
        from safetensors.torch import save_file
        save_file(net.state_dict(), str(tmp_path / "net.safetensors"))
    except ImportError:                              # our own writer, from numpy, dtypes kept
        save_safetensors(tmp_path / "net.safetensors", {k: v.numpy() for k, v in sd.items()})
    xs = x.numpy()
    for fname in ("net.npz", "net.safetensors"):
        ours = load_pytorch_state_dict(tmp_path / fname, which, num_classes=10)
        np.testing.assert_allclose(ours.forward(xs), want, rtol=1e-4, atol=1e-4)
    ann = fold_batchnorm(ours)
    np.testing.assert_allclose(ann.forward(xs), want, rtol=1e-4, atol=1e-4)
    snn = convert(ann)
    balance_thresholds(snn, ann, [xs])
    assert np.all(np.isfinite(simulate(snn, xs, 8).output))
    # BF16: torch's own bfloat16 rounding decodes to torch's values
    w = sd["features.0.weight" if which == "vgg_cpu_bn" else "conv1.weight"]
    bits = w.bfloat16().view(torch.int16).numpy().view(np.uint16)
    save_safetensors(tmp_path / "bf16.safetensors", {"w": ("BF16", bits)})
    np.testing.assert_array_equal(read_safetensors(tmp_path / "bf16.safetensors")[0]["w"],
                                  w.bfloat16().float().numpy())
    np.testing.assert_array_equal(float32_to_bf16(w.numpy()), bits)


def test_the_batchnorm_hint_names_only_an_arch_that_fits():
    """A plain file of another width loaded as vgg_cpu_bn: the error does not send the user to
    'vgg_cpu' (which would fail the same way); a plain vgg_cpu file loaded as vgg_cpu_bn does."""
    from icsnn_np.io.checkpoint import CheckpointError
    from icsnn_np.io.imports import import_state_dict
    from icsnn_np.models import build_model
    other = {k: np.asarray(v) for k, v in build_model("vgg16_cpu").state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        import_state_dict(other, "vgg_cpu_bn")
    assert "try arch" not in str(info.value)
    same = {k: np.asarray(v) for k, v in build_model("vgg_cpu").state_dict().items()}
    with pytest.raises(CheckpointError, match="try arch 'vgg_cpu'"):
        import_state_dict(same, "vgg_cpu_bn")
