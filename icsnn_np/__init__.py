"""icsnn-np: the paper "Optimal ANN2SNN Conversion at Low Latency" (Li et al., Mathematics
2023, 11(1), 58; IC-SNN) in plain NumPy/CuPy: train a ReLU ANN, convert it to
integrate-and-fire neurons, and close the low-latency gap with an initialised membrane
potential (Alg. 1, 2) and coding compensation (Alg. 3).

Read the method in this order: ``neurons`` (Eq. 2-6, Eq. 11) -> ``simulate`` -> ``convert``
(threshold balancing, Sec. 3.1) -> ``init_mem`` (Alg. 1-3) -> ``variants``; the ANN under
it: ``module``, ``layers``, ``models``, ``optim``. Everything else is a wing: ``io`` (data,
checkpoints, PyTorch import), ``beyond`` (methods beyond the paper), ``fast`` (the fast
engine), ``runs`` (experiments), ``cli`` (the commands).

From checkpoint to IC-SNN accuracy with the top-level names (docs/api.md)::

    import icsnn_np as ic
    model, header = ic.load_checkpoint("vgg_cpu")
    data = ic.load_dataset("cifar10-slice")
    x_cal = ic.normalize(data.x_train[:256], header["mean"], header["std"])
    snn = ic.convert(model)
    ic.balance_thresholds(snn, model, [x_cal], p=0.99)
    ic.calibrate_variant(snn, "ic-snn", T=8, batches=[x_cal])
    res = ic.simulate(snn, ic.normalize(data.x_test[:100], header["mean"], header["std"]), 8)

Commands: ``python -m icsnn_np`` lists them (demo, train, reproduce, compare, bench).
The core's names are here at once; the wings' are imported on first use (PEP 562).
"""
from __future__ import annotations

import importlib

from . import _moved
from ._version import __version__
# The core's main calls (NumPy only; imported here, so that ``icsnn_np.convert`` and
# ``icsnn_np.simulate`` are the functions, not the modules of the same names).
from .backend import get_xp, to_device, to_host
from .convert import balance_thresholds, convert, relu_outputs
from .init_mem import alg1_weight_init, alg2_data_init, alg3_ic_init, compensation
from .models import build_model
from .neurons import IFNode, eq11_rate, error_term
from .optim import SGD, cross_entropy, train_step
from .simulate import rate_encode, simulate
from .variants import PAPER_VARIANTS, VARIANTS, calibrate_variant

# The wings' main calls: name -> "module[:attribute]", imported when first used (PEP 562), so
# that ``import icsnn_np`` loads nothing of the engine, the commands, the benchmarks or tests.
API = {
    "load_checkpoint": "runs.checkpoints:load_model", "save_checkpoint": "io.checkpoint",
    "load_pytorch_state_dict": "io.imports", "load_dataset": "io.data",
    "normalize": "io.preprocess",
    "ConversionConfig": "runs.evaluate", "evaluate_conversion": "runs.evaluate",
    "ann_accuracy": "runs.evaluate", "snn_accuracy": "runs.evaluate",
    "use_engine": "runs.engine", "export_snn": "runs.export", "METHODS": "beyond.methods",
}
_moved.install()        # 0.1's module names (icsnn_np.checkpoint, ...) for this version, warned

__all__ = ["__version__", "IFNode", "eq11_rate", "error_term", "simulate", "rate_encode", "convert",
           "balance_thresholds", "relu_outputs", "alg1_weight_init", "alg2_data_init",
           "alg3_ic_init", "compensation", "calibrate_variant", "PAPER_VARIANTS", "VARIANTS",
           "build_model", "SGD", "train_step", "cross_entropy", "get_xp", "to_device", "to_host",
           *API]


def __getattr__(name):
    if name not in API:
        raise AttributeError(f"module 'icsnn_np' has no attribute {name!r}")
    module, _, attr = API[name].partition(":")
    value = getattr(importlib.import_module(f".{module}", __name__), attr or name)
    globals()[name] = value            # the next lookup is a plain attribute
    return value


def __dir__():
    return sorted(__all__)
