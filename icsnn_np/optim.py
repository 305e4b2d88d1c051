"""Training: the loss, the optimiser, the lr schedule and one SGD step. The paper's recipe
(Sec. 4.1.3): SGD, lr 0.1, momentum 0.9, weight decay 5e-4, batch 128, 300 epochs, lr / 5 at
epochs 70/130/190/240 (scaled to fewer epochs): ``train_step(model, SGD(model), x, y)``."""
from __future__ import annotations

from .backend import xp_of

PAPER_EPOCHS = 300
PAPER_MILESTONES = (70, 130, 190, 240)


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of (N, K) logits and (N,) labels, and dloss/dlogits (N, K); log-sum-exp."""
    xp, N = xp_of(logits), logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))     # (N, K) log-softmax
    loss = -logp[xp.arange(N), labels].mean()
    grad = xp.exp(logp)
    grad[xp.arange(N), labels] -= 1.0
    grad /= N
    return loss, grad


class SGD:
    """SGD with momentum and L2 weight decay, PyTorch semantics:
    g = grad + wd * p;  buf = momentum * buf + g;  p -= lr * buf   (in place)."""

    def __init__(self, model, lr=0.1, momentum=0.9, weight_decay=5e-4):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        named = list(model.named_parameters())
        self.names = [n for n, _, _ in named]
        self.slots = [(m, k) for _, m, k in named]
        self.buffers = [None] * len(self.slots)           # momentum, by parameter

    def step(self):
        for i, (m, k) in enumerate(self.slots):
            p, g = m.params[k], m.grads[k]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                if self.buffers[i] is None:
                    self.buffers[i] = g.copy()
                else:
                    self.buffers[i] *= self.momentum
                    self.buffers[i] += g
                g = self.buffers[i]
            p -= self.lr * g


def train_step(model, opt: SGD, x, y):
    """One SGD step on a normalised batch x (N, C, H, W) with labels y (N,): forward, loss,
    backward, update. Returns (loss as a 0-d device array, logits (N, K))."""
    model.train().zero_grad()
    logits = model.forward(x)
    loss, dlogits = cross_entropy(logits, y)
    model.backward(dlogits, input_grad=False)       # dL/dx of the data is never used
    opt.step()
    return loss, logits


def scaled_milestones(epochs: int, milestones=PAPER_MILESTONES, total=PAPER_EPOCHS):
    """The paper's milestones scaled to ``epochs`` (e.g. 30 epochs -> 7, 13, 19, 24)."""
    return tuple(milestones) if epochs >= total else \
        tuple(sorted({max(1, round(m * epochs / total)) for m in milestones}))


def lr_at(epoch: int, base_lr: float, milestones, gamma: float = 0.2) -> float:
    """Step schedule: lr = base_lr * gamma^(number of milestones <= epoch); epochs from 0."""
    return base_lr * gamma ** sum(epoch >= m for m in milestones)
