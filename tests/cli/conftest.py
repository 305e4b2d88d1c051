"""Fixtures of the command-line tests (tests/cli/)."""
import pytest

from icsnn_np.io.checkpoint import save_checkpoint
from icsnn_np.io.data import load_dataset
from icsnn_np.io.preprocess import channel_stats
from icsnn_np.models import build_model


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """An untrained vgg_cpu checkpoint with the slice's normalisation (fast to build)."""
    ds = load_dataset("cifar10-slice")
    mean, std = channel_stats(ds.x_train)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.npz"
    save_checkpoint(path, build_model("vgg_cpu", seed=3), "vgg_cpu", 10,
                    {"mean": mean.tolist(), "std": std.tolist(), "dataset": "cifar10-slice",
                     "test_acc": 0.1})
    return path
