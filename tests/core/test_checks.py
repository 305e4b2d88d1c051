"""checks.py: every argument check accepts what is valid (returning it) and names what is
wrong in one line."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from icsnn_np.backend import to_device
from icsnn_np.runs.checks import check_count
from icsnn_np.checks import (check_choice, check_finite, check_image_size, check_quantile, check_T,
                             check_threshold)


@pytest.mark.parametrize("T", [1, 8, np.int64(16), np.int32(3)])
def test_check_T_accepts_positive_integers(T):
    assert check_T(T) == int(T) and type(check_T(T)) is int


@pytest.mark.parametrize("T", [0, -3, 2.5, 8.0, "8", True, False, None, np.float64(4)])
def test_check_T_rejects_everything_else(T):
    with pytest.raises(ValueError, match=re.escape(f"T must be a positive integer number of time steps, got {T!r}")):
        check_T(T)


def test_check_choice():
    assert check_choice("rate", ("direct", "rate"), "input coding") == "rate"
    with pytest.raises(ValueError, match="unknown input coding 'poisson'; choose one of direct, rate"):
        check_choice("poisson", ("direct", "rate"), "input coding")


def test_check_count():
    assert check_count(3, "epochs") == 3 and check_count(np.int64(0), "n", minimum=0) == 0
    for bad in (0, -1, 2.0, "3", True, None):
        with pytest.raises(ValueError, match=re.escape(f"epochs must be an integer >= 1, got {bad!r}")):
            check_count(bad, "epochs")


def test_check_quantile():
    assert check_quantile(1) == 1.0 and check_quantile("0.5") == 0.5 and check_quantile(1e-9) == 1e-9
    for bad in (0, -0.5, 1.0001, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\]"):
            check_quantile(bad)
    for bad in (None, "high", [0.5], True, False):              # a bool is no quantile (not p = 1)
        with pytest.raises(ValueError, match=r"p must be a number in \(0, 1\]"):
            check_quantile(bad)


def test_check_finite(xp):
    a = to_device(np.array([1.0, 2.0]), xp)
    assert check_finite(a, "x") is a and check_finite(3.0, "x") == 3.0
    for bad in (np.array([1.0, np.nan]), np.array([[np.inf]]), float("nan"), [1.0, -np.inf]):
        arr = to_device(bad, xp) if isinstance(bad, np.ndarray) else bad
        with pytest.raises(ValueError, match="^the weights contains NaN or inf$"):
            check_finite(arr, "the weights")


def test_check_threshold(xp):
    th = to_device(np.array([0.5, 1.0]), xp)
    assert check_threshold(th) is th and check_threshold(0.7, "relu1") == 0.7
    with pytest.raises(ValueError, match=r"relu1: threshold V_th has a value <= 0 \(0\)"):
        check_threshold(to_device(np.array([0.5, 0.0]), xp), "relu1")
    with pytest.raises(ValueError, match=r"layer2: threshold V_th has a value <= 0 \(-1\)"):
        check_threshold(-1.0, "layer2")
    with pytest.raises(ValueError, match="IF node: threshold V_th has NaN or inf"):
        check_threshold(float("nan"))
    with pytest.raises(ValueError, match="threshold V_th has NaN or inf"):
        check_threshold("high")


def test_a_bool_threshold_and_a_bad_backend_say_what_they_are():
    """``IFNode(True)``'s V_th is named as no number (not only "NaN"); ``to_device(x, 42)``
    says which backends there are (0.1: AttributeError)."""
    from icsnn_np.backend import to_device as dev
    with pytest.raises(ValueError, match=r"is no number \(bool\)"):
        check_threshold(True)
    with pytest.raises(ValueError, match="unknown backend 42; choose one of numpy, cupy"):
        dev(np.zeros(2), 42)


def _images(side, n=1):
    return np.random.default_rng(side).standard_normal((n, 3, side, side)).astype(np.float32)


@pytest.mark.parametrize("name, features, other", [("vgg_cpu", "2,048", 48), ("resnet20", "64", 20)])
def test_the_core_names_the_image_size_a_network_takes(name, features, other):
    """64x64 images (and a 64x64 batch among 32x32 ones) into a network built for 32x32: the
    core's simulate, balance_thresholds and Alg. 2 say so at the door, in terms of images, not
    "Linear expects (N, 2048), got (1, 8192)" from inside; no threshold is set on the way."""
    from icsnn_np.convert import balance_thresholds, convert
    from icsnn_np.init_mem import alg2_data_init
    from icsnn_np.models import build_model
    from icsnn_np.simulate import simulate

    model = build_model(name)
    snn = convert(model)
    want = f"the network expects 32\u00d732 images ({features} features at its first Linear), got 64\u00d764"
    before = [n.v_th for n in snn.nodes]
    with pytest.raises(ValueError, match=re.escape(f"calibration batch 0: {want}")):
        balance_thresholds(snn, model, [_images(64)])
    with pytest.raises(ValueError, match=re.escape(f"calibration batch 1: {want}")):
        balance_thresholds(snn, model, [_images(32), _images(64)])        # mixed sizes
    assert [n.v_th for n in snn.nodes] == before
    balance_thresholds(snn, model, [_images(32, 2)], p=1.0)
    with pytest.raises(ValueError, match=re.escape(f"the input batch: {want}")):
        simulate(snn, _images(64), 2)
    with pytest.raises(ValueError, match=re.escape(f"the input batch: {want}")):
        alg2_data_init(snn, [_images(32), _images(64)], 2)                 # mixed sizes
    with pytest.raises(ValueError, match=re.escape(f"expects 32\u00d732 images ({features} features at its first "
                                                   f"Linear), got {other}\u00d7{other}")):
        simulate(snn, _images(other), 2)
    assert simulate(snn, _images(32), 1).output.shape == (1, 10)          # the size it takes runs


def test_the_image_size_check_is_the_cores_own():
    """The check lives in the core: a bare import of the core raises it, with nothing of
    runs/ (or any other subpackage) loaded."""
    code = """if 1:
        import sys
        import numpy as np
        from icsnn_np.convert import convert
        from icsnn_np.models import build_model
        from icsnn_np.simulate import simulate
        try:
            simulate(convert(build_model("vgg_cpu")), np.zeros((1, 3, 64, 64), np.float32), 2)
        except ValueError as error:
            print(error)
        print(sorted(m for m in sys.modules if m.startswith("icsnn_np.") and (m.count(".") > 1 or
                     sys.modules[m].__file__.endswith("__init__.py"))))     # a subpackage
    """
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONIOENCODING": "utf-8"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", cwd=root,
                         env=env, check=True).stdout.splitlines()
    assert out == ["the input batch: the network expects 32\u00d732 images (2,048 features at its "
                   "first Linear), got 64\u00d764", "[]"]


def test_check_image_size_without_a_linear_or_a_fitting_side():
    """A network with no Linear takes any size; one whose Linear no square image fits says so."""
    from icsnn_np.layers import Conv2d, Flatten, Linear, ReLU
    from icsnn_np.module import Sequential

    conv = Sequential(Conv2d(3, 2, 3, padding=1), ReLU())
    assert check_image_size(conv, _images(7)).shape == (1, 3, 7, 7)
    odd = Sequential(Conv2d(3, 2, 3, padding=1), ReLU(), Flatten(), Linear(2 * 6 * 5, 4))
    with pytest.raises(ValueError, match=re.escape("the input batch: the network expects another image "
                                                   "size (60 features at its first Linear), got 6\u00d76")):
        check_image_size(odd, _images(6))
    with pytest.raises(ValueError, match="the batch: 1-channel images, but the network's first conv takes 3"):
        check_image_size(odd, _images(6)[:, :1], "the batch")
