"""module.py: traversal and PyTorch-style names, state_dict / load_state_dict, train/eval,
``rebuild`` (a tree copy that shares the parameters), He initialisation."""
import numpy as np
import pytest
from helpers import F64, tiny_resnet

from icsnn_np.io.batchnorm import BatchNorm2d
from icsnn_np.layers import Conv2d, Flatten, Linear, ReLU
from icsnn_np.models import BasicBlock
from icsnn_np.module import Module, Sequential, he_normal, rebuild


def test_names_follow_the_tree():
    net = tiny_resnet(0)
    names = [n for n, _ in net.named_modules()]
    assert names[:4] == ["", "0", "1", "2"] and "2.conv1" in names and "3.shortcut.0" in names
    params = [n for n, _, _ in net.named_parameters()]
    assert params[:4] == ["0.weight", "0.bias", "2.conv1.weight", "2.conv1.bias"]
    assert list(net.state_dict()) == params                         # no buffers here
    assert net.num_parameters() == sum(v.size for v in net.state_dict().values())


def test_state_dict_lists_parameters_then_buffers_module_by_module():
    net = Sequential(Conv2d(1, 2, 1), BatchNorm2d(2), ReLU())
    assert list(net.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias",
                                      "1.running_mean", "1.running_var"]


def test_load_state_dict_copies_in_place_and_checks_names_and_shapes(rng):
    a, b = tiny_resnet(0), tiny_resnet(1)
    w = b.state_dict()["0.weight"]
    b.load_state_dict(a.state_dict())
    assert b.state_dict()["0.weight"] is w                          # the same array, new values
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    sd = dict(a.state_dict())
    del sd["0.bias"]
    with pytest.raises(KeyError, match="missing.*0.bias"):
        b.load_state_dict(sd)
    with pytest.raises(KeyError, match="unexpected.*extra"):
        b.load_state_dict({**a.state_dict(), "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"shape mismatch for 6.weight: expected \(3, 32\), got \(3, 7\)"):
        b.load_state_dict({**a.state_dict(), "6.weight": np.zeros((3, 7))})


def test_train_eval_and_zero_grad_reach_every_module():
    net = tiny_resnet(0)
    net.eval()
    assert not any(m.training for _, m in net.named_modules())
    net.train()
    assert all(m.training for _, m in net.named_modules())
    for _, m, k in net.named_parameters():
        m.grads[k][...] = 1.0
    net.zero_grad()
    assert not any(np.any(m.grads[k]) for _, m, k in net.named_parameters())


def test_sequential_indexing_and_flat():
    inner = Sequential(Conv2d(1, 1, 1), ReLU())
    blk = BasicBlock(1, 1)
    net = Sequential(inner, blk, Flatten(), Linear(4, 2))
    assert len(net.children) == 4 and net[1] is blk and list(net.children.values())[2] is net[2]
    assert list(net.flat()) == [inner[0], inner[1], blk, net[2], net[3]]   # blocks stay whole


def test_rebuild_copies_the_tree_and_shares_the_parameters():
    net = tiny_resnet(0)
    relus = []
    copy = rebuild(net, lambda m, path: relus.append(path) or Flatten() if isinstance(m, ReLU) else m)
    assert relus == ["1", "2.relu1", "2.relu2", "3.relu1", "3.relu2"]  # leaves get their path
    assert copy is not net and copy[2] is not net[2] and type(copy[2]) is BasicBlock
    assert copy[0] is net[0]                                           # kept leaves: the same
    assert isinstance(copy[2].children["relu1"], Flatten)
    assert isinstance(net[2].children["relu1"], ReLU)                  # the original untouched
    for (na, ma, ka), (nb, mb, kb) in zip(net.named_parameters(), copy.named_parameters()):
        assert na == nb and mb.params[kb] is ma.params[ka]


def test_module_defaults():
    m = Module()
    assert m.params == m.grads == m.buffers == {} and not m.children and m.training


def test_he_normal_has_the_he_standard_deviation():
    w = he_normal(np.random.default_rng(0), (256, 64, 3, 3), 64 * 9, F64)
    assert w.dtype == F64 and w.shape == (256, 64, 3, 3)
    assert w.std() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.01)
    assert abs(w.mean()) < 0.01 * w.std()
    np.testing.assert_array_equal(w, he_normal(np.random.default_rng(0), (256, 64, 3, 3), 64 * 9, F64))
