"""A training run across sittings: the optimiser state beside the checkpoint, checked whole.

After every epoch ``training.train`` writes the checkpoint (``--out``), the best one so far
(``<stem>_best.npz``) and ``<stem>_resume.npz``: the momentum buffers, the RNG state, the
epoch, the best accuracy, the history and the settings. ``--resume`` reads them back, and
checks every key, type and shape *before* the first epoch: a damaged or foreign state file
is one line naming what is wrong, never a traceback or a run that fails an epoch later.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..backend import to_host
from ..io.checkpoint import CheckpointError
from .checkpoints import load_model
from ..io.files import atomic_write
from ..optim import SGD

# What must match between a run and its resumption (the rest may change, e.g. data_dir).
RESUME_KEYS = ("dataset", "model", "epochs", "batch_size", "lr", "momentum", "weight_decay",
               "seed", "augment", "train_limit", "milestones", "warmup", "init", "activation",
               "levels", "init_from", "val_size", "val_seed")
HISTORY_KEYS = ("epoch", "lr", "loss", "train_acc", "test_acc")


def best_path_of(out) -> Path:
    """Where the best checkpoint so far lives: ``<stem>_best<suffix>`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.stem + "_best" + out.suffix)


def resume_path(out) -> Path:
    """Where the optimiser state for ``--resume`` lives: ``<stem>_resume.npz`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.stem + "_resume.npz")


def save_resume(path, opt: SGD, rng, state: dict):
    """Momentum buffers, the RNG state and ``state`` (epoch, best accuracy, history),
    written atomically after the epoch's checkpoint."""
    arrays = {f"buf.{n}": to_host(b) for n, b in momentum_state(opt).items()}
    meta = {**state, "rng": rng.bit_generator.state}
    arrays["__state__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_resume(rp: Path, model, epochs: int, rng) -> tuple[dict, dict]:
    """(state, momentum buffers by parameter name) of ``rp``, every part checked against
    ``model`` (its parameters' names and shapes) and the run (``epochs``, ``rng``'s kind).
    Raises CheckpointError naming the file and what is wrong."""
    def bad(what):
        return CheckpointError(f"cannot resume: {rp} is corrupt ({what}); delete it and "
                               f"{rp.with_name(rp.name.replace('_resume', ''))} to start afresh")
    try:
        with np.load(rp, allow_pickle=False) as z:
            if not hasattr(z, "files") or "__state__" not in z.files:
                raise bad("no __state__ entry: not a resume file of icsnn_np.train")
            state = json.loads(bytes(z["__state__"]).decode())
            bufs = {k[4:]: z[k] for k in z.files if k.startswith("buf.")}
            extra = [k for k in z.files if k != "__state__" and not k.startswith("buf.")]
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error,
            UnicodeDecodeError) as e:
        raise bad(f"{type(e).__name__}: {e}") from None
    if extra:
        raise bad(f"unexpected entry {extra[0]!r}")
    if not isinstance(state, dict):
        raise bad("its state is not an object")
    for key in ("epoch", "best_acc", "history", "train_config", "rng"):
        if key not in state:
            raise bad(f"its state lacks {key!r}")
    epoch, best, history = state["epoch"], state["best_acc"], state["history"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 1 <= epoch <= epochs:
        raise bad(f"epoch {epoch!r} is not an epoch count in 1..{epochs}")
    if isinstance(best, bool) or not isinstance(best, (int, float)) or not 0 <= best <= 1:
        raise bad(f"best_acc {best!r} is not an accuracy in [0, 1]")
    if not isinstance(history, list) or len(history) != epoch or not all(
            isinstance(h, dict) and all(k in h for k in HISTORY_KEYS) for h in history):
        raise bad(f"its history is not one record ({', '.join(HISTORY_KEYS)}) per epoch done")
    if not isinstance(state["train_config"], dict):
        raise bad("train_config is not an object")
    saved = state["rng"]
    if not isinstance(saved, dict) or saved.get("bit_generator") != rng.bit_generator.state["bit_generator"]:
        raise bad(f"its RNG state is not a {rng.bit_generator.state['bit_generator']} state")
    try:
        np.random.default_rng(0).bit_generator.state = saved       # tried on a scratch generator
    except (TypeError, ValueError, KeyError) as e:
        raise bad(f"its RNG state is malformed: {e}") from None
    params = {n: m.params[k] for n, m, k in model.named_parameters()}
    for name, b in bufs.items():
        if name not in params:
            raise bad(f"momentum for unknown parameter {name!r}")
        if tuple(b.shape) != tuple(params[name].shape):
            raise bad(f"momentum of {name!r} has shape {tuple(b.shape)}, the parameter "
                      f"{tuple(params[name].shape)}")
        if b.dtype.kind != "f" or not np.all(np.isfinite(b)):
            raise bad(f"momentum of {name!r} is not finite floating point ({b.dtype})")
    return state, bufs


def resume(cfg, config: dict, model, opt: SGD, rng, out: Path, xp, log):
    """Load the last checkpoint and optimiser state of an earlier run of the same settings;
    returns (best accuracy so far, history, epochs done). Everything is checked before
    anything is changed."""
    rp = resume_path(out)
    if not out.is_file() or not rp.is_file():
        raise CheckpointError(f"cannot resume: {out} and {rp} must both exist (they are "
                              f"written after every epoch of a run with --out {out})")
    last, header = load_model(out, arch=cfg.model)
    state, bufs = read_resume(rp, model, cfg.epochs, rng)
    before = state["train_config"]
    diff = [k for k in RESUME_KEYS if before.get(k) != config.get(k)]
    if diff:
        raise CheckpointError(f"cannot resume: {rp} was written with different settings "
                              f"({', '.join(f'{k}={before.get(k)!r}' for k in diff)})")
    if header.get("epoch", state["epoch"]) != state["epoch"]:
        raise CheckpointError(f"cannot resume: {out} holds epoch {header.get('epoch')} but {rp} "
                              f"epoch {state['epoch']}: they are not of one moment of the run")
    model.load_state_dict(last.state_dict())
    load_momentum_state(opt, bufs, xp)
    rng.bit_generator.state = state["rng"]
    log(f"resuming after epoch {state['epoch']} of {cfg.epochs} from {out} "
        f"(best validation accuracy so far {100 * state['best_acc']:.2f}%)")
    return state["best_acc"], state["history"], state["epoch"]


def momentum_state(opt) -> dict:
    """{parameter name: momentum buffer} of an ``optim.SGD`` (what resuming a run needs)."""
    return {n: b for n, b in zip(opt.names, opt.buffers) if b is not None}


def load_momentum_state(opt, state: dict, xp):
    """Restore ``momentum_state``'s buffers on ``xp`` (copies: steps update them in place)."""
    unknown = set(state) - set(opt.names)
    if unknown:
        raise ValueError(f"momentum for unknown parameters {sorted(unknown)[:3]}")
    opt.buffers = [None if n not in state else xp.array(state[n]) for n in opt.names]
