"""The paper's networks by name: shapes, PyTorch-style names, no BN / dropout / max-pool,
seeds; the residual block (forward formula, float64 gradients); Fixup initialisation."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import F64, buffer_names, gradcheck, random_biases
from hypothesis import given
from hypothesis import strategies as st
from strategies import block_cases, seeds

from icsnn_np.layers import AvgPool2d, Conv2d, Flatten, Linear, ReLU
from icsnn_np.testing.reference import conv2d_naive
from icsnn_np.models import MODELS, VGG_CFGS, VGG_HIDDEN, BasicBlock, build_model, resnet20, vgg
from icsnn_np.runs.training import INITS, fixup_init
from icsnn_np.module import Sequential

PAPER_MODELS = ["vgg16", "resnet20", "vgg_cpu", "vgg16_cpu"]
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


@pytest.mark.parametrize("name, n_linear", [("vgg16", 3), ("vgg_cpu", 1),
                                           ("vgg16_cpu", 3)])
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


def test_vgg16_cpu_is_vgg16_at_a_quarter_of_the_widths(model):
    """13 convs in 5 stages of VGG-16's layout, 3 linear layers, every width / 4, hidden
    layers (1024, 1024)."""
    m = model("vgg16_cpu")
    convs = [mod for _, mod in m.named_modules() if isinstance(mod, Conv2d)]
    linears = [mod for _, mod in m.named_modules() if isinstance(mod, Linear)]
    assert len(convs) == 13 and len(linears) == 3
    full = [v for v in VGG_CFGS["vgg16"] if v != "A"]
    assert [c.out_channels for c in convs] == [v // 4 for v in full]
    assert [c.out_channels for c in convs] == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    assert all(c.kernel_size == 3 and c.stride == 1 and c.padding == 1 for c in convs)
    assert [v == "A" for v in VGG_CFGS["vgg16_cpu"]] == [v == "A" for v in VGG_CFGS["vgg16"]]
    assert VGG_HIDDEN["vgg16_cpu"] == (1024, 1024)
    sd = m.state_dict()
    assert sd["features.0.weight"].shape == (16, 3, 3, 3)
    assert sd["features.28.weight"].shape == (128, 128, 3, 3)      # the last conv
    assert sd["classifier.0.weight"].shape == (1024, 128)          # 5 pools: 32 -> 1
    assert sd["classifier.2.weight"].shape == (1024, 1024)
    assert sd["classifier.4.weight"].shape == (10, 1024)
    assert sum(isinstance(mod, AvgPool2d) for _, mod in m.named_modules()) == 5
    assert sum(isinstance(mod, ReLU) for _, mod in m.named_modules()) == 15


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
    assert buffer_names(m) == []                  # no running statistics anywhere
    assert any(isinstance(mod, AvgPool2d) for _, mod in m.named_modules())


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown model 'vgg19'") as info:
        build_model("vgg19")
    for name in PAPER_MODELS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["resnet20", "vgg_cpu", "vgg16_cpu"])
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


def test_every_model_name_builds():
    assert set(PAPER_MODELS) <= set(MODELS) and INITS == ("he", "fixup")


# --------------------------------------------------------------------------- BasicBlock
@pytest.mark.parametrize("projection", [False, True], ids=["identity", "projection"])
@given(data=st.data(), seed=seeds)
def test_basic_block_gradients(projection, data, seed):
    case = data.draw(block_cases(projection))
    rng = np.random.default_rng(seed)
    block = random_biases(BasicBlock(case.c_in, case.c_out, case.stride, rng=rng, dtype=F64), rng)
    assert ("shortcut" in block.children) == case.projection
    gradcheck(block, rng.normal(size=case.in_shape), rng)


@pytest.mark.parametrize("c_in, c_out, stride", [(4, 4, 1), (16, 16, 1), (3, 5, 1), (4, 4, 2),
                                                 (16, 32, 2)])
def test_basic_block_forward_is_the_formula(rng, c_in, c_out, stride):
    """relu(conv2(relu(conv1(x))) + shortcut(x)), shortcut = identity or a 1x1 strided conv."""
    block = random_biases(BasicBlock(c_in, c_out, stride, rng=rng, dtype=F64), rng)
    x = rng.normal(size=(2, c_in, 6, 6))
    c = block.children
    p = lambda name: (c[name].params["weight"], c[name].params["bias"])  # noqa: E731
    h = np.maximum(conv2d_naive(x, *p("conv1"), stride=stride, padding=1), 0)
    h = conv2d_naive(h, *p("conv2"), stride=1, padding=1)
    if "shortcut" in c:
        sc = c["shortcut"][0]
        sc_out = conv2d_naive(x, sc.params["weight"], sc.params["bias"], stride=stride)
    else:
        sc_out = x
    np.testing.assert_allclose(block.forward(x), np.maximum(h + sc_out, 0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c["shortcut"].forward(x) if "shortcut" in c else x, sc_out, rtol=1e-12,
                               atol=1e-12)
    if stride == 1 and c_in == c_out:
        assert "shortcut" not in c
        gradcheck(block, x, rng)


def test_basic_block_children_order_puts_each_relu_after_its_conv():
    assert list(BasicBlock(4, 4).children) == ["conv1", "relu1", "conv2", "relu2"]
    assert list(BasicBlock(4, 8, 2).children) == ["conv1", "relu1", "conv2", "relu2", "shortcut"]


def test_basic_block_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expects \(N, 4, H, W\)"):
        BasicBlock(4, 4).forward(np.zeros((1, 3, 6, 6), np.float32))


# --------------------------------------------------------------------------- Fixup
def _blocks(m):
    return [mod for _, mod in m.named_modules() if isinstance(mod, BasicBlock)]


def test_fixup_zeroes_each_branch_end_and_the_classifier_and_scales_the_branch_start():
    he = resnet20(seed=3)
    m = fixup_init(resnet20(seed=3))
    L = len(_blocks(m))
    assert L == 9
    for a, b in zip(_blocks(he), _blocks(m)):
        assert not np.any(b.children["conv2"].params["weight"])                  # rule 2: zero
        np.testing.assert_allclose(b.children["conv1"].params["weight"],
                                   a.children["conv1"].params["weight"] * L ** -0.5, rtol=1e-6)
        if "shortcut" in b.children:                                             # untouched
            np.testing.assert_array_equal(b.children["shortcut"][0].params["weight"],
                                          a.children["shortcut"][0].params["weight"])
    assert not np.any(m.children["fc"].params["weight"]) and not np.any(m.children["fc"].params["bias"])
    np.testing.assert_array_equal(m.children["conv1"].params["weight"], he.children["conv1"].params["weight"])


def test_fixup_m_sets_the_scale_exponent():
    """With m layers per branch the first m - 1 are scaled by L^(-1/(2m - 2)): m = 3 -> L^(-1/4)."""
    he, m = resnet20(seed=1, blocks=1), fixup_init(resnet20(seed=1, blocks=1), m=3)
    L = 3
    for a, b in zip(_blocks(he), _blocks(m)):
        np.testing.assert_allclose(b.children["conv1"].params["weight"],
                                   a.children["conv1"].params["weight"] * L ** -0.25, rtol=1e-6)


def test_fixup_resnet_at_init_is_its_shortcut_path(rng):
    """At Fixup init every residual branch outputs exactly its conv2 bias (zero weights), so
    each block is relu(shortcut(x) + b2); with zero biases (the init) it is relu(shortcut(x)).
    The network is then stem -> relu -> [relu(shortcut)] per block -> pool -> fc, and its
    output is exactly 0 (the classifier starts at zero) while the features are not."""
    m = fixup_init(resnet20(seed=2, widths=(4, 8, 8), dtype=F64))
    x = rng.normal(size=(2, 3, 32, 32))
    h = m.children["relu"].forward(m.children["conv1"].forward(x))
    for b in _blocks(m):
        sc = b.children.get("shortcut")
        h = np.maximum(h if sc is None else sc.forward(h), 0)
    feats = m.children["flatten"].forward(m.children["avgpool"].forward(h))
    c = m.children
    got = x
    for name in ("conv1", "relu", "layer1", "layer2", "layer3", "avgpool", "flatten"):
        got = c[name].forward(got)
    np.testing.assert_array_equal(got, feats)                      # exactly, not to rounding
    assert np.any(feats)
    np.testing.assert_array_equal(m.forward(x), np.zeros((2, 10)))
    # and a nonzero conv2 bias enters as relu(shortcut(x) + b): the law is not vacuous
    b = _blocks(m)[0]
    b.children["conv2"].params["bias"][...] = 0.5
    h0 = m.children["relu"].forward(m.children["conv1"].forward(x))
    np.testing.assert_array_equal(b.forward(h0), np.maximum(h0 + 0.5, 0))


def test_fixup_gives_the_residual_branch_a_gradient():
    """Zero conv2 and fc weights must not stall training: a step of the loss still reaches
    conv2 (its input is nonzero) and the classifier."""
    from icsnn_np.optim import cross_entropy
    m = fixup_init(resnet20(seed=0, widths=(4, 4, 4), blocks=1, dtype=F64)).train()
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32))
    m.zero_grad()
    _, g = cross_entropy(m.forward(x), np.array([1, 2]))
    m.backward(g)
    assert np.any(m.children["fc"].grads["weight"])
    assert not np.any(_blocks(m)[0].children["conv2"].grads["weight"])      # fc is zero: none yet
    m.children["fc"].params["weight"][...] = 0.1                            # after one step
    m.zero_grad()
    _, g = cross_entropy(m.forward(x), np.array([1, 2]))
    m.backward(g)
    assert np.any(_blocks(m)[0].children["conv2"].grads["weight"])


def test_fixup_needs_a_residual_network():
    with pytest.raises(ValueError, match="fixup_init needs a residual network"):
        fixup_init(vgg(VGG_CFGS["vgg_cpu"]))
