"""BatchNorm2d (forward/backward/running statistics), Module buffers, the _bn models and
folding BN into the preceding conv."""
import numpy as np
import pytest
from helpers import buffer_names

from icsnn_np.io.batchnorm import BatchNorm2d, bn_block, build_any, fold_batchnorm, plain_arch
from icsnn_np.io.checkpoint import load_checkpoint, save_checkpoint
from icsnn_np.convert import balance_thresholds, convert
from icsnn_np.layers import Conv2d, ReLU
from icsnn_np.models import BasicBlock, build_model
from icsnn_np.module import Sequential
from icsnn_np.optim import SGD
from icsnn_np.simulate import simulate


def randomize_bn(model, seed=0):
    """Non-trivial BN parameters and running statistics (in place)."""
    rng = np.random.default_rng(seed)
    for _, m in model.named_modules():
        if isinstance(m, BatchNorm2d):
            C = m.num_features
            m.params["weight"][...] = rng.uniform(0.5, 1.5, C)
            m.params["bias"][...] = rng.normal(0, 0.2, C)
            m.buffers["running_mean"][...] = rng.normal(0, 0.3, C)
            m.buffers["running_var"][...] = rng.uniform(0.5, 2.0, C)
        elif isinstance(m, Conv2d) and "bias" in m.params:
            m.params["bias"][...] = rng.normal(0, 0.1, m.out_channels)
    return model


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(1e-12, np.max(np.abs(a) + np.abs(b)))


# --------------------------------------------------------------------------- the layer
def test_gradient_check_train_mode():
    """Central differences in float64 for dx, d weight, d bias (BN has no kinks)."""
    rng = np.random.default_rng(1)
    bn = BatchNorm2d(3, dtype=np.float64)
    bn.params["weight"][...] = rng.uniform(0.5, 1.5, 3)
    bn.params["bias"][...] = rng.normal(0, 1, 3)
    x = rng.normal(0.5, 2.0, (4, 3, 3, 2))
    R = rng.normal(0, 1, x.shape)                  # loss = sum(y * R)

    def loss():
        return float((bn.forward(x) * R).sum())

    bn.train()
    bn.zero_grad()
    bn.forward(x)
    dx = bn.backward(R)
    eps = 1e-6

    def numeric(arr):
        g = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            old = arr[i]
            arr[i] = old + eps
            lp = loss()
            arr[i] = old - eps
            lm = loss()
            arr[i] = old
            g[i] = (lp - lm) / (2 * eps)
        return g

    assert rel_err(dx, numeric(x)) < 1e-7
    for k in ("weight", "bias"):
        assert rel_err(bn.grads[k], numeric(bn.params[k])) < 1e-7


def test_running_statistics_and_eval():
    """PyTorch semantics: momentum 0.1, biased var to normalise, unbiased var in the running
    estimate, eps 1e-5; eval mode normalises with the running statistics."""
    rng = np.random.default_rng(2)
    bn = BatchNorm2d(2, dtype=np.float64)
    x1 = rng.normal(1.0, 2.0, (3, 2, 4, 4))
    x2 = rng.normal(-1.0, 0.5, (3, 2, 4, 4))
    y1 = bn.forward(x1)
    m1, v1 = x1.mean(axis=(0, 2, 3)), x1.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y1, (x1 - m1[None, :, None, None]) / np.sqrt(v1 + 1e-5)[None, :, None, None],
                               rtol=1e-12, atol=1e-12)
    bn.forward(x2)
    n = 3 * 16
    rm = 0.9 * (0.1 * m1) + 0.1 * x2.mean(axis=(0, 2, 3))
    rv = 0.9 * (0.9 + 0.1 * v1 * n / (n - 1)) + 0.1 * x2.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.buffers["running_mean"], rm, rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], rv, rtol=1e-12)
    bn.eval()
    y = bn.forward(x1)
    np.testing.assert_allclose(y, (x1 - rm[None, :, None, None]) / np.sqrt(rv + 1e-5)[None, :, None, None],
                               rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="more than one value"):
        BatchNorm2d(2).forward(np.ones((1, 2, 1, 1), np.float32))
    with pytest.raises(ValueError, match="BatchNorm2d expects"):
        bn.forward(np.ones((1, 3, 2, 2)))


def test_matches_torch():
    torch = pytest.importorskip("torch", reason="PyTorch not installed: cross-check skipped")
    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    x = rng.normal(0.3, 1.5, (4, 3, 5, 5))
    g = rng.normal(0, 1, x.shape)
    tb = torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        tb.weight.copy_(torch.tensor(rng.uniform(0.5, 1.5, 3)))
        tb.bias.copy_(torch.tensor(rng.normal(0, 1, 3)))
    ours = BatchNorm2d(3, dtype=np.float64)
    ours.params["weight"][...] = tb.weight.detach().numpy()
    ours.params["bias"][...] = tb.bias.detach().numpy()
    xt = torch.tensor(x, requires_grad=True)
    yt = tb(xt)
    yt.backward(torch.tensor(g))
    y = ours.forward(x)
    dx = ours.backward(g)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.grads["weight"], tb.weight.grad.numpy(), rtol=1e-10)
    for k in ("running_mean", "running_var"):
        np.testing.assert_allclose(ours.buffers[k], getattr(tb, k).numpy(), rtol=1e-12)
    tb.eval()
    ours.eval()
    np.testing.assert_allclose(ours.forward(x), tb(torch.tensor(x)).detach().numpy(), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- buffers in Module
def test_buffers_in_state_dict_not_in_optimiser(tmp_path):
    m = build_any("vgg_cpu_bn")
    names = list(m.state_dict())
    assert names[:6] == ["features.0.weight", "features.0.bias", "features.1.weight",
                         "features.1.bias", "features.1.running_mean", "features.1.running_var"]
    params = [n for n, _, _ in m.named_parameters()]
    assert "features.1.running_mean" not in params and "features.1.weight" in params
    assert buffer_names(m)[:2] == ["features.1.running_mean", "features.1.running_var"]
    assert len(SGD(m).slots) == len(params) and SGD(m).names == params
    # load_state_dict and checkpoints carry the buffers
    randomize_bn(m)
    m.eval()
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    path = save_checkpoint(tmp_path / "bn.npz", m, "vgg_cpu_bn", 10)
    m2, _ = load_checkpoint(path)
    np.testing.assert_array_equal(m2.eval().forward(x), m.forward(x))
    m.to(np, np.float64)
    assert m.children["features"][1].buffers["running_var"].dtype == np.float64


def test_plain_models_unchanged():
    """The no-BN default keeps its children, names and draws (checkpoints depend on them)."""
    b = BasicBlock(16, 32, 2)
    assert list(b.children) == ["conv1", "relu1", "conv2", "relu2", "shortcut"]
    assert list(b.children["shortcut"].children) == ["0"] and "bias" in b.children["conv1"].params
    assert all(not m.buffers for _, m in build_model("resnet20").named_modules())
    names = list(build_model("resnet20").state_dict())
    assert names[:4] == ["conv1.weight", "conv1.bias", "layer1.0.conv1.weight", "layer1.0.conv1.bias"]
    bb = bn_block(16, 32, 2)
    assert list(bb.children) == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "shortcut"]
    assert list(bb.children["shortcut"].children) == ["0", "1"]
    # same seed, same conv weights with and without BN
    a, c = build_model("vgg_cpu"), build_any("vgg_cpu_bn")
    np.testing.assert_array_equal(a.state_dict()["features.2.weight"], c.state_dict()["features.3.weight"])


def test_bn_block_gradient_check():
    """Backprop through a BasicBlock with BN and a projection shortcut (float64, train)."""
    rng = np.random.default_rng(4)
    blk = bn_block(2, 3, 2, rng=rng, dtype=np.float64).train()
    x = rng.normal(0, 1, (3, 2, 4, 4))
    R = rng.normal(0, 1, (3, 3, 2, 2))
    blk.zero_grad()
    blk.forward(x)
    dx = blk.backward(R)
    eps, num = 1e-6, np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        lp = float((blk.forward(x) * R).sum())
        x[i] = old - eps
        lm = float((blk.forward(x) * R).sum())
        x[i] = old
        num[i] = (lp - lm) / (2 * eps)
    assert rel_err(dx, num) < 1e-6


# --------------------------------------------------------------------------- folding
@pytest.mark.parametrize("arch", ["vgg_cpu_bn", "resnet20_bn"])
def test_fold_is_exact_and_plain(arch):
    m = randomize_bn(build_any(arch, dtype=np.float64), seed=5).eval()
    x = np.random.default_rng(6).normal(size=(2, 3, 32, 32))
    y = m.forward(x)
    f = fold_batchnorm(m)
    np.testing.assert_allclose(f.forward(x), y, rtol=1e-10, atol=1e-10)
    plain = build_model(plain_arch(arch))
    assert [(k, v.shape) for k, v in f.state_dict().items()] == \
        [(k, v.shape) for k, v in plain.state_dict().items()]
    assert not any(isinstance(mm, BatchNorm2d) for _, mm in f.named_modules())
    assert any(isinstance(mm, BatchNorm2d) for _, mm in m.named_modules())   # input untouched
    np.testing.assert_array_equal(m.forward(x), y)


def test_fold_refuses_bn_after_relu():
    m = Sequential(Conv2d(1, 2, 3, 1, 1), ReLU(), BatchNorm2d(2))
    with pytest.raises(ValueError, match="'2'.*does not directly follow a Conv2d"):
        fold_batchnorm(m)


def test_converted_bn_model_runs(tmp_path):
    """vgg_cpu_bn -> fold -> convert -> simulate; the folded model saves as a plain vgg_cpu."""
    m = randomize_bn(build_any("vgg_cpu_bn"), seed=7).eval()
    x = np.random.default_rng(8).normal(size=(4, 3, 32, 32)).astype(np.float32)
    ann = fold_batchnorm(m)
    snn = convert(ann)
    balance_thresholds(snn, ann, [x], p=0.99)
    res = simulate(snn, x, 16)
    assert res.output.shape == (4, 10) and np.all(np.isfinite(res.output))
    assert len(snn.nodes) == 6
    path = save_checkpoint(tmp_path / "folded.npz", ann, plain_arch("vgg_cpu_bn"), 10)
    back, header = load_checkpoint(path)
    assert header["arch"] == "vgg_cpu"
    np.testing.assert_allclose(back.eval().forward(x), m.forward(x), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- backends
def test_batchnorm_and_folding_on_backend_agree_with_numpy(xp):
    """Train-mode forward/backward (running statistics too), eval mode and folding into the
    conv with the parameters on the device: NumPy's numbers."""
    from icsnn_np.backend import to_device, to_host
    rng = np.random.default_rng(3)
    x, R = rng.normal(0.5, 2.0, (4, 3, 5, 5)), rng.normal(size=(4, 3, 5, 5))

    def run(xp_):
        m = randomize_bn(Sequential(Conv2d(3, 3, 3, 1, 1, rng=np.random.default_rng(1),
                                           dtype=np.float64), BatchNorm2d(3, dtype=np.float64)), 2)
        m.to(xp_).train()
        m.zero_grad()
        y = m.forward(to_device(x, xp_))
        dx = m.backward(to_device(R, xp_))
        out = [y, dx] + [a for _, a in m.state_dict().items()]
        m.eval()
        ye = m.forward(to_device(x, xp_))
        yf = fold_batchnorm(m).forward(to_device(x, xp_))
        return [to_host(a) for a in out + [ye, yf]]

    for a, b in zip(run(xp), run(np)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
