"""Accuracy of the ANN and of each SNN variant at a list of T, as the paper's Tables 2-5.

    res = evaluate_conversion(model, x_calib, x_test, y_test, ConversionConfig(T=(8, 16, 32)))
    print(format_table(res))          # Markdown: ANN_ACC and T_t-L = ANN_ACC - SNN_ACC (points)

Accuracies are in percent and losses in points. Every variant is calibrated for the T it
runs at (Alg. 2 depends on T); thresholds are balanced once, on the calibration images.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from .backend import backend_name, to_host, xp_of
from .convert import balance_thresholds, convert
from .init_mem import COMPENSATIONS, GRANULARITIES, READINGS, VARIANTS, _check, calibrate_variant
from .simulate import DEFAULT_CHUNK, check_coding, check_T, simulate

DEFAULT_TS = (8, 16, 32, 64, 128, 256)
BLOCK_MODES = ("node", "paper")


@dataclass
class ConversionConfig:
    """Everything that decides a conversion result (written next to every table).

    Default readings, picked by measurement (results/vgg_cpu_cifar10.md, tutorials 5-6):
    Alg. 2 ``remainder`` (the raw mean of v(T) is far below zero and silences the network)
    and compensation ``literal`` V_th/(2T) as Alg. 3 prints it. The remainder reading of
    Alg. 2 already comes out at ~V_th/2 in every layer, so IC-SNN = R + V_th/(2T) lands near
    the V_th/2 that rounds rather than floors; ``half`` on top of it gives ~V_th and rounds
    everything up. ``half`` is the better compensation for C-SNN alone (``--comp half``).
    """
    T: tuple = DEFAULT_TS
    variants: tuple = VARIANTS
    p: float = 0.99               # threshold quantile
    channelwise: bool = False     # per-channel thresholds (ours; the paper is layer-wise)
    coding: str = "direct"        # input coding
    reading: str = "remainder"    # Alg. 2 reading: raw | remainder | clip
    granularity: str = "layer"    # v(0) granularity: layer (paper) | channel | neuron
    comp: str = "literal"         # compensation: literal V_th/(2T) | half V_th/2 (see below)
    block: str = "node"           # ResNets: node (own V_th and v(0) per IF node) | paper
                                  # (one V_th per block, v(0) on its first node; DESIGN 5)
    n_calib: int = 256            # training images for threshold balancing and Alg. 2
    batch_size: int = 200
    chunk: int = DEFAULT_CHUNK
    seed: int = 0

    @property
    def v0_scope(self) -> str:
        """init_mem's v(0) scope for this block treatment."""
        return "block-first" if self.block == "paper" else "all"

    def validate(self):
        self.T = tuple(check_T(t) for t in self.T)
        for v in self.variants:
            _check(v, VARIANTS + ("ic-snn-fp", "i-snn-alg1"), "variant")
        check_coding(self.coding)
        _check(self.reading, READINGS, "Alg. 2 reading")
        _check(self.granularity, GRANULARITIES, "granularity")
        _check(self.comp, COMPENSATIONS, "compensation")
        _check(self.block, BLOCK_MODES, "block treatment")
        if not 0.0 < float(self.p) <= 1.0:
            raise ValueError(f"the threshold quantile p must lie in (0, 1], got {self.p}")
        if self.n_calib < 1 or self.batch_size < 1:
            raise ValueError("n_calib and batch_size must be >= 1")
        return self


def quantile_for(header: dict, p=None) -> float:
    """The threshold quantile to use with a checkpoint: ``p`` if given, else the one stored
    with the model (the bundled model carries the p chosen on held-out training images,
    results/p_validation.md), else the package default ``ConversionConfig.p``."""
    if p is not None:
        return float(p)
    return float(header.get("p", ConversionConfig.p))


def _split(x, size):
    return [x[i:i + size] for i in range(0, len(x), size)]


def ann_accuracy(model, x, y, batch_size=500) -> float:
    """Top-1 accuracy of the ANN in percent (x normalised, on the device; y host ints)."""
    model.eval()
    pred = np.concatenate([to_host(model.forward(xb).argmax(axis=1)) for xb in _split(x, batch_size)])
    return 100.0 * float((pred == np.asarray(y)).mean())


def snn_accuracy(snn, x, y, T, cfg: ConversionConfig, mean=None, std=None):
    """(accuracy %, mean firing rate) of the SNN with its current v(0) after T steps."""
    correct, spikes, neuron_steps = 0, 0, 0
    for i, xb in enumerate(_split(x, cfg.batch_size)):
        res = simulate(snn, xb, T, coding=cfg.coding, chunk=cfg.chunk, count=True,
                       mean=mean, std=std, seed=cfg.seed + 7919 * i)
        pred = to_host(res.output.argmax(axis=1))
        correct += int((pred == np.asarray(y[i * cfg.batch_size:i * cfg.batch_size + len(xb)])).sum())
        spikes += sum(res.spikes)
        neuron_steps += len(xb) * T * sum(res.neurons)
    return 100.0 * correct / len(x), spikes / max(1, neuron_steps)


def convert_balanced(model, calib, cfg: ConversionConfig):
    """Convert ``model`` and set its thresholds from the calibration batches ``calib``
    (the p-quantile of each layer's ReLU outputs, Sec. 3.1); returns (snn, thresholds)."""
    snn = convert(model)
    xp = xp_of(calib[0])
    ths = balance_thresholds(snn, model, calib, p=cfg.p, channelwise=cfg.channelwise, xp=xp,
                             per_block=cfg.block == "paper")
    return snn, ths


def calibrated_snn(model, x_calib, variant: str, T: int, cfg: ConversionConfig | None = None,
                   mean=None, std=None):
    """A converted SNN, thresholds balanced and v(0) set as ``variant`` prescribes for ``T``
    steps (what ``evaluate_conversion`` measures), e.g. to count its spikes."""
    cfg = (cfg or ConversionConfig()).validate()
    calib = _split(x_calib[:cfg.n_calib], cfg.batch_size)
    snn, _ = convert_balanced(model, calib, cfg)
    calibrate_variant(snn, variant, T, calib, cfg.reading, cfg.granularity, cfg.comp,
                      v0_scope=cfg.v0_scope,
                      xp=xp_of(x_calib), coding=cfg.coding, chunk=cfg.chunk, mean=mean, std=std,
                      seed=cfg.seed)
    return snn


def evaluate_conversion(model, x_calib, x_test, y_test, cfg: ConversionConfig | None = None,
                        mean=None, std=None, log=None):
    """Convert ``model`` and measure every variant at every T; returns a JSON-ready dict.

    x_calib: normalised training images (threshold balancing + Alg. 2), x_test/y_test: the
    evaluation set. ``mean``/``std`` (the normalisation) are needed for rate coding.
    """
    cfg = (cfg or ConversionConfig()).validate()
    log = log or (lambda s: None)
    xp = xp_of(x_test)
    calib = _split(x_calib[:cfg.n_calib], cfg.batch_size)
    t_start = time.perf_counter()
    ann = ann_accuracy(model, x_test, y_test)
    snn, ths = convert_balanced(model, calib, cfg)
    log(f"ANN accuracy {ann:.2f}% on {len(x_test)} test images; thresholds (p={cfg.p}): "
        + ", ".join(f"{float(np.max(to_host(np.asarray(t) if np.ndim(t) == 0 else t))):.3g}" for t in ths))
    sim_kw = dict(coding=cfg.coding, chunk=cfg.chunk, mean=mean, std=std, seed=cfg.seed)
    table = {v: {} for v in cfg.variants}
    for T in cfg.T:
        for v in cfg.variants:
            t0 = time.perf_counter()
            calibrate_variant(snn, v, T, calib, cfg.reading, cfg.granularity, cfg.comp, xp=xp,
                              v0_scope=cfg.v0_scope, **sim_kw)
            acc, rate = snn_accuracy(snn, x_test, y_test, T, cfg, mean, std)
            table[v][str(T)] = {"acc": round(acc, 2), "loss": round(ann - acc, 2),
                                "firing_rate": round(rate, 5)}
            log(f"T={T:4d} {v:10s} acc {acc:6.2f}%  loss {ann - acc:6.2f}  rate {rate:.4f}  "
                f"({time.perf_counter() - t0:.1f}s)")
    return {"ann_acc": round(ann, 2), "variants": table, "n_test": int(len(x_test)),
            "n_calib": int(min(cfg.n_calib, len(x_calib))), "backend": backend_name(xp),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "seconds": round(time.perf_counter() - t_start, 1)}


def format_table(res: dict, labels: dict | None = None) -> str:
    """Markdown table in the paper's format: method | ANN_ACC | T_t-L ... (loss in points)."""
    Ts = sorted({int(t) for v in res["variants"].values() for t in v}, key=int)
    head = "| Method | ANN_ACC | " + " | ".join(f"T{t}-L" for t in Ts) + " |"
    sep = "|---|---|" + "---|" * len(Ts)
    rows = [head, sep]
    for name, per_t in res["variants"].items():
        label = (labels or {}).get(name, name.upper())
        cells = [f"{per_t[str(t)]['loss']:.2f}" if str(t) in per_t else "" for t in Ts]
        rows.append(f"| {label} | {res['ann_acc']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def format_accuracy_table(res: dict) -> str:
    """Plain-text table: per variant and T, accuracy / loss / mean firing rate."""
    Ts = sorted({int(t) for v in res["variants"].values() for t in v}, key=int)
    lines = [f"ANN accuracy: {res['ann_acc']:.2f}%  ({res['n_test']} test images)",
             f"{'variant':10s} " + " ".join(f"{'T=' + str(t):>22s}" for t in Ts),
             f"{'':10s} " + " ".join(f"{'acc / loss / rate':>22s}" for _ in Ts)]
    for name, per_t in res["variants"].items():
        cells = []
        for t in Ts:
            r = per_t.get(str(t))
            cells.append(f"{r['acc']:6.2f} / {r['loss']:5.2f} / {r['firing_rate']:.3f}" if r else "")
        lines.append(f"{name:10s} " + " ".join(f"{c:>22s}" for c in cells))
    return "\n".join(lines)
