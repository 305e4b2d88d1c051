"""The paper's networks by name: shapes, PyTorch-style names, no BN / dropout / max-pool, seeds."""
from __future__ import annotations

import numpy as np
import pytest

from icsnn_np.layers import AvgPool2d, BasicBlock, Conv2d, Flatten, Linear, ReLU, Sequential
from icsnn_np.models import VGG_CFGS, build_model

PAPER_MODELS = ["vgg16", "resnet20", "vgg_cpu", "vgg_bench"]
ALLOWED = (Conv2d, Linear, ReLU, AvgPool2d, Flatten, Sequential, BasicBlock)

@pytest.fixture(scope="module")
def model():
    """model(name): each model built once for this file, freed after it (vgg16: ~34M weights)."""
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache[name] = build_model(name, num_classes=10, seed=0)
        return cache[name]

    yield get
    cache.clear()


def expected_vgg_names(cfg, n_linear):
    """features.<i> for each conv (conv, relu = 2 slots; pool = 1 slot); classifier.0, .2, ..."""
    names, i = [], 0
    for v in cfg:
        if v == "A":
            i += 1
        else:
            names += [f"features.{i}.weight", f"features.{i}.bias"]
            i += 2
    for j in range(n_linear):
        names += [f"classifier.{2 * j}.weight", f"classifier.{2 * j}.bias"]
    return names


def expected_resnet20_names():
    names = ["conv1.weight", "conv1.bias"]
    for s in (1, 2, 3):
        for b in range(3):
            for conv in ("conv1", "conv2"):
                names += [f"layer{s}.{b}.{conv}.weight", f"layer{s}.{b}.{conv}.bias"]
            if s > 1 and b == 0:
                names += [f"layer{s}.{b}.shortcut.0.weight", f"layer{s}.{b}.shortcut.0.bias"]
    return names + ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_forward_gives_one_row_of_logits_per_image(model, name, rng):
    n = 1 if name == "vgg16" else 2                  # vgg16 is big: one image is enough
    x = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    out = model(name).eval().forward(x)
    assert out.shape == (n, 10)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", ["resnet20", "vgg_cpu"])
def test_num_classes_sets_the_head(name, rng):
    m = build_model(name, num_classes=100, seed=0)
    assert m.eval().forward(rng.normal(size=(2, 3, 32, 32)).astype(np.float32)).shape == (2, 100)


@pytest.mark.parametrize("name, n_linear", [("vgg16", 3), ("vgg_cpu", 1), ("vgg_bench", 1)])
def test_vgg_parameter_names_follow_pytorch(model, name, n_linear):
    names = list(model(name).state_dict())
    assert names == expected_vgg_names(VGG_CFGS[name], n_linear)
    assert "features.0.weight" in names and "classifier.0.weight" in names


def test_vgg16_shapes(model):
    sd = model("vgg16").state_dict()
    assert sd["features.0.weight"].shape == (64, 3, 3, 3)       # OIHW, as in PyTorch
    assert sd["features.28.weight"].shape == (512, 512, 3, 3)   # the last conv
    assert sd["classifier.0.weight"].shape == (4096, 512)       # (out, in)
    assert sd["classifier.4.weight"].shape == (10, 4096)


def test_resnet20_parameter_names_and_shapes(model):
    sd = model("resnet20").state_dict()
    assert list(sd) == expected_resnet20_names()
    assert sd["conv1.weight"].shape == (16, 3, 3, 3)
    assert sd["layer1.0.conv1.weight"].shape == (16, 16, 3, 3)
    assert sd["layer2.0.conv1.weight"].shape == (32, 16, 3, 3)
    assert sd["layer2.0.shortcut.0.weight"].shape == (32, 16, 1, 1)
    assert sd["layer3.2.conv2.weight"].shape == (64, 64, 3, 3)
    assert sd["fc.weight"].shape == (10, 64)
    assert "layer1.0.shortcut.0.weight" not in sd                 # identity shortcut


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_no_batchnorm_dropout_or_maxpool(model, name):
    m = model(name)
    for mname, mod in m.named_modules():
        assert isinstance(mod, ALLOWED), f"{mname}: {type(mod).__name__}"
        cls = type(mod).__name__.lower()
        assert not any(bad in cls for bad in ("batchnorm", "dropout", "maxpool")), mname
    assert list(m.named_buffers()) == []          # no running statistics anywhere
    assert any(isinstance(mod, AvgPool2d) for _, mod in m.named_modules())


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg19'") as info:
        build_model("vgg19")
    for name in PAPER_MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["resnet20", "vgg_cpu", "vgg_bench"])
def test_same_seed_same_weights_different_seed_different(name):
    a = build_model(name, seed=3).state_dict()
    b = build_model(name, seed=3).state_dict()
    c = build_model(name, seed=4).state_dict()
    assert list(a) == list(b) == list(c)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    weights = [k for k in a if k.endswith("weight")]
    assert all(not np.array_equal(a[k], c[k]) for k in weights)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_respected(dtype):
    m = build_model("vgg_cpu", dtype=dtype)
    assert {v.dtype for v in m.state_dict().values()} == {np.dtype(dtype)}
