"""Accuracy of the ANN and of each SNN variant at a list of T, as the paper's Tables 2-5.

    res = evaluate_conversion(model, x_calib, x_test, y_test, ConversionConfig(T=(8, 16, 32)))
    print(format_table(res))          # Markdown: ANN_ACC and T_t-L = ANN_ACC - SNN_ACC (points)

Accuracies are in percent and losses in points. Every variant is calibrated for the T it
runs at (Alg. 2 depends on T); thresholds are balanced once, on the calibration images.
The variants are the paper's and those beyond it (``beyond.methods.METHODS``); each method
says what calibration it needs, and this module asks it without naming any.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..backend import backend_name, to_host, xp_of
from ..beyond.methods import METHODS, Options, Setup
from ..beyond.prerun import PRERUN_STEPS
from ..beyond.qcfs import qcfs_layers, qcfs_thresholds
from ..beyond.thresholds import THRESHOLD_SEARCHES, Thresholds, channel_threshold
from ..checks import check_choice, check_quantile, check_T
from .checks import check_count
from ..convert import balance_thresholds, convert, layer_threshold
from ..layers import ReLU
from ..init_mem import COMPENSATIONS, GRANULARITIES, READING, READINGS
from ..io.preprocess import augment, batched, check_normalisation
from ..simulate import CODINGS
from ..variants import PAPER_VARIANTS
from .engine import DEFAULT_ENGINE, ENGINES, Engine, use_engine
from .inputs import (check_finite_output, check_first_currents, check_images, check_labels,  # noqa: F401
                     model_classes)
from .progress import duration, tracking
from .resources import check_memory

DEFAULT_TS = (8, 16, 32, 64, 128, 256)
CALIB_RECIPES = ("ours", "official")
BLOCK_MODES = ("node", "paper")
# How V_th is set, in words, for the settings every table and --json records.
THRESHOLD_RULES = {
    "layer": "layer: p-quantile of all the layer's ReLU outputs on the calibration images, "
             "zeros included (a p whose quantile is 0 is refused)",
    "channel": "channel: p-quantile of each channel's positive ReLU outputs (a channel never "
               "positive takes the layer's)",
    "mse": "mse: SNN Calibration's least-squares search per layer at each T",
    "qcfs": "qcfs: each layer's trained QCFS threshold lambda (p unused)",
}


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
    variants: tuple = PAPER_VARIANTS
    p: float = 0.99               # threshold quantile
    channelwise: bool = False     # per-channel thresholds (ours; the paper is layer-wise)
    coding: str = "direct"        # input coding
    reading: str = READING        # Alg. 2 reading: raw | remainder | clip
    granularity: str = "layer"    # v(0) granularity: layer (paper) | channel | neuron
    comp: str = "literal"         # compensation: literal V_th/(2T) | half V_th/2 (see below)
    block: str = "node"           # ResNets: node (own V_th and v(0) per IF node) | paper
                                  # (one V_th per block, v(0) on its first node; Sec. 4.3)
    n_calib: int = 256            # training images for threshold balancing and Alg. 2
    batch_size: int = 200
    engine: str = DEFAULT_ENGINE  # fast | reference (the teaching simulate); runs/engine.py
    chunk: int | None = None      # fast engine: time steps per layer pass (None: its default)
    seed: int = 0
    threshold_search: str = "quantile"  # quantile (balancing at p) | mse (SNN Calibration's
                                        # search at each T, layer-wise; beyond/thresholds.py)
    prerun: int = PRERUN_STEPS    # pre-run steps of COS and SRP (rho, tau), run before the T
                                  # counted ones and reported beside T
    calib_recipe: str = "ours"    # SNN Calibration's rows: ours (the thresholds and images of
                                  # every row) | official (MSE thresholds, one batch of 128
                                  # augmented training images, as its code pairs them)

    @property
    def threshold_mode(self) -> str:
        """layer | channel | mse: the key of THRESHOLD_RULES for these settings."""
        return "mse" if self.threshold_search == "mse" else "channel" if self.channelwise else "layer"

    @property
    def v0_scope(self) -> str:
        """init_mem's v(0) scope for this block treatment."""
        return "block-first" if self.block == "paper" else "all"

    def inputs(self, mean=None, std=None) -> dict:
        """The input coding every simulation gets (an SNN carries it: ``snn.coding``)."""
        return dict(coding=self.coding, seed=self.seed, mean=mean, std=std)

    def options(self) -> Options:
        """What the methods' set-ups read (beyond/methods.py)."""
        return Options(self.reading, self.granularity, self.comp, self.v0_scope, self.prerun)

    def validate(self):
        self.T = tuple(check_T(t) for t in self.T)
        if not self.T:
            raise ValueError("T must list at least one number of time steps")
        for v in self.variants:
            check_choice(v, METHODS, "variant")
        check_choice(self.coding, CODINGS, "input coding")
        check_choice(self.reading, READINGS, "Alg. 2 reading")
        check_choice(self.granularity, GRANULARITIES, "granularity")
        check_choice(self.comp, COMPENSATIONS, "compensation")
        check_choice(self.block, BLOCK_MODES, "block treatment")
        check_choice(self.engine, ENGINES, "engine")
        check_choice(self.threshold_search, THRESHOLD_SEARCHES, "threshold search")
        check_choice(self.calib_recipe, CALIB_RECIPES, "SNN Calibration recipe")
        if self.threshold_search == "mse" and self.channelwise:
            raise ValueError("the MSE threshold search is layer-wise: not with channel-wise thresholds")
        check_count(self.prerun, "prerun", minimum=0)
        self.p = check_quantile(self.p)
        check_count(self.n_calib, "n_calib")
        check_count(self.batch_size, "batch_size")
        if self.chunk is not None:
            check_count(self.chunk, "chunk")
        return self


@dataclass(frozen=True)
class Run:
    """How a calibrated variant is simulated: its ``Setup`` (beyond/methods.py), whose runs
    begin with ``prerun`` uncounted steps (COS, SRP; 0 for the others) on the SNN it set up
    (SNN Calibration's has currents of its own). Called with the core ``simulate``'s
    arguments; the SNN given is the one it was set up from."""
    setup: Setup

    @property
    def prerun(self) -> int:
        return self.setup.prerun

    def __call__(self, snn, x, T, **kw):
        return self.setup.run(x, T, **kw)

    def steps(self, T: int) -> dict:
        """What a row reports beside T: the pre-run steps and every step run, pre-run + T."""
        return {"prerun": int(self.prerun), "steps": int(self.prerun + T)}


def threshold_rule(modes, model=None) -> str:
    """The threshold rule(s) ``modes`` (THRESHOLD_RULES keys) in words; a QCFS-trained
    ``model`` takes its trained λ whatever the mode."""
    if model is not None and qcfs_layers(model):
        return THRESHOLD_RULES["qcfs"]
    return "; ".join(THRESHOLD_RULES[m] for m in dict.fromkeys(modes))


def quantile_for(header: dict, p=None) -> float:
    """The threshold quantile to use with a checkpoint: ``p`` if given, else the one stored
    with the model (the bundled model carries the p chosen on held-out training images,
    results/p_validation.md), else the package default ``ConversionConfig.p``."""
    if p is not None:
        return float(p)
    if "p" not in header:
        return ConversionConfig.p
    try:
        return check_quantile(header["p"])
    except ValueError as e:
        raise ValueError(f"the checkpoint stores p = {header['p']!r}: {e}") from None


def check_coding_stats(cfg: ConversionConfig, mean, std):
    """Rate coding decodes intensities with the normalisation: numbers, finite, std > 0."""
    if cfg.coding == "rate" and mean is not None and std is not None:
        check_normalisation(mean, std, "rate coding")


def calibration_passes(variant: str, model) -> int:
    """How many times a variant runs the SNN on the calibration images of ``model`` (for
    ETAs): the method says (beyond/methods.py)."""
    nodes = sum(isinstance(m, ReLU) for _, m in model.named_modules())
    return METHODS[variant].passes(nodes)


def preflight(model, x, cfg: ConversionConfig, Ts=None):
    """Before any work: refuse a simulation that cannot fit in memory (resources.py) at the
    largest T of ``Ts`` (default ``cfg.T``) on a batch of ``x``, saying how to fit."""
    check_memory(convert(model), x[:cfg.batch_size], max(Ts or cfg.T), cfg.engine, cfg.chunk,
                 count=True)


def estimate(model, x, cfg: ConversionConfig, image_steps: float) -> str:
    """"estimated ~X" for ``image_steps`` (images x time steps) of simulation, from the speed
    of a short run measured now (4 steps on one batch of ``x``; calibration not counted)."""
    snn = use_engine(convert(model), Engine(cfg.engine, cfg.chunk, check=False))
    xb, t0 = x[:cfg.batch_size], time.perf_counter()
    snn.run(xb, 4)
    rate = 4 * len(xb) / max(1e-9, time.perf_counter() - t0)
    return f"estimated ~{duration(image_steps / rate)} ({image_steps:,.0f} image-steps at ~{rate:,.0f}/s)"


def ann_accuracy(model, x, y, batch_size=200, what: str = "the image batch") -> float:
    """Top-1 accuracy of the ANN in percent (x normalised, on the device; y host ints in
    [0, classes)). Images of another size, and outputs that overflow, are refused."""
    check_images(model, x, what)
    y = check_labels(y, len(x), "the labels", model_classes(model))
    model.eval()
    with np.errstate(over="ignore", invalid="ignore"):   # an overflow is refused below, in one line
        pred = np.concatenate([to_host(check_finite_output(model.forward(xb), xb, what).argmax(axis=1))
                               for xb in batched(x, batch_size)])
    return 100.0 * float((pred == y).mean())


def snn_correct(snn, x, y, T, cfg: ConversionConfig, mean=None, std=None, run=None):
    """(which images the SNN classifies right, a host bool array (N,); mean firing rate) with
    its current v(0) after T steps, simulated by ``run`` (``calibrate``'s; default the
    engine of ``cfg`` without a pre-run). The rate is per neuron and step over every step
    run, a pre-run's included. Per image, so two variants can be compared on the same
    images (a paired test, tables.mcnemar)."""
    y = check_labels(y, len(x), "the labels", model_classes(snn.tree))
    if run is None:                             # the SNN as it stands, on cfg's engine and coding
        run = Run(Setup(use_engine(snn, cfg.engine, cfg.chunk, cfg.inputs(mean, std))))
    correct, spikes, neuron_steps = [], 0, 0
    for i, xb in enumerate(batched(x, cfg.batch_size)):
        if cfg.coding == "direct":              # (rate-coded inputs are bounded spikes)
            check_first_currents(snn, xb)
        res = run(snn, xb, T, count=True, **dict(cfg.inputs(mean, std), seed=cfg.seed + 7919 * i))
        pred = to_host(res.output.argmax(axis=1))
        correct.append(pred == np.asarray(y[i * cfg.batch_size:i * cfg.batch_size + len(xb)]))
        spikes += res.total_spikes()                  # a pre-run's spikes count too
        neuron_steps += len(xb) * (run.prerun + T) * sum(res.neurons)
    return np.concatenate(correct), spikes / max(1, neuron_steps)


def snn_accuracy(snn, x, y, T, cfg: ConversionConfig, mean=None, std=None, run=None):
    """(accuracy %, mean firing rate) of the SNN with its current v(0) after T steps."""
    correct, rate = snn_correct(snn, x, y, T, cfg, mean, std, run)
    return 100.0 * int(correct.sum()) / len(x), rate


def convert_balanced(model, calib, cfg: ConversionConfig):
    """Convert ``model`` and set its thresholds from the calibration batches ``calib``
    (the p-quantile of each layer's ReLU outputs, Sec. 3.1; a QCFS-trained ANN takes its
    trained λ instead, beyond/qcfs.py); returns (snn, thresholds)."""
    snn = convert(model)
    if qcfs_layers(model):
        if cfg.threshold_search == "mse" or cfg.channelwise:
            raise ValueError("a QCFS-trained ANN converts with its trained λ as V_th: the "
                             f"{cfg.threshold_mode} threshold rule does not apply (use layer)")
        return snn, qcfs_thresholds(snn, model)
    rule = channel_threshold if cfg.channelwise else layer_threshold
    ths = balance_thresholds(snn, model, calib, p=cfg.p, per_block=cfg.block == "paper", rule=rule)
    return snn, ths


def calibrate(snn, variant: str, T: int, calib, cfg: ConversionConfig, thresholds=None,
              mean=None, std=None) -> Run:
    """Set ``snn``'s thresholds (``cfg.threshold_search``, through ``thresholds``, a
    ``Thresholds`` made right after balancing), its engine and input coding (``cfg``), and
    set ``variant`` up at T; returns the Run that simulates it. A method whose own code pairs
    it with other calibration (``Method.recipe``) gets it with ``cfg.calib_recipe="official"``."""
    method = METHODS[check_choice(variant, METHODS, "variant")]
    recipe = method.recipe if cfg.calib_recipe == "official" else None
    search = recipe.thresholds if recipe else cfg.threshold_search
    if search != "quantile" or thresholds is not None:
        (thresholds or Thresholds(snn, calib)).use(search, T)
    if recipe:
        calib = recipe_batch(calib, recipe, cfg.seed, mean, std)
    use_engine(snn, cfg.engine, cfg.chunk, cfg.inputs(mean, std))
    return Run(method.setup(snn, T, calib, cfg.options()))


def recipe_batch(calib, recipe, seed: int, mean=None, std=None):
    """A method's own calibration images (``Method.recipe``; SNN Calibration's
    ``bias_corr_model``: one batch of 128 training images, augmented): the first
    ``recipe.images`` of ``calib``, augmented when it says so (random crop from the
    black-padded image, random flip; seeded)."""
    xp = xp_of(calib[0])
    x = xp.concatenate(list(calib))[:recipe.images]
    if not recipe.augment:
        return [x]
    black = 0.0 if mean is None else xp.asarray(
        (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(1, -1, 1, 1))
    return [augment(x - black, np.random.default_rng(seed)) + black]   # pads black, not 0


def calibrated_snn(model, x_calib, variant: str, T: int, cfg: ConversionConfig | None = None,
                   mean=None, std=None):
    """A converted SNN, thresholds balanced and v(0) set as ``variant`` prescribes for ``T``
    steps (what ``evaluate_conversion`` measures), e.g. to count its spikes: (snn, run)."""
    cfg = (cfg or ConversionConfig()).validate()
    check_images(model, x_calib, "the calibration batch (x_calib)")
    check_coding_stats(cfg, mean, std)
    calib = batched(x_calib[:cfg.n_calib], cfg.batch_size)
    snn, _ = convert_balanced(model, calib, cfg)
    return snn, calibrate(snn, variant, T, calib, cfg, mean=mean, std=std)


def evaluate_conversion(model, x_calib, x_test, y_test, cfg: ConversionConfig | None = None,
                        mean=None, std=None, log=None):
    """Convert ``model`` and measure every variant at every T; returns a JSON-ready dict.

    x_calib: normalised training images (threshold balancing + Alg. 2), x_test/y_test: the
    evaluation set. ``mean``/``std`` (the normalisation) are needed for rate coding.
    """
    cfg = (cfg or ConversionConfig()).validate()
    check_images(model, x_calib, "the calibration batch (x_calib)")
    check_images(model, x_test, "the test batch (x_test)")
    check_labels(y_test, len(x_test), "the test labels", model_classes(model))
    check_coding_stats(cfg, mean, std)
    log = log or (lambda s: None)
    preflight(model, x_test, cfg)
    calib = batched(x_calib[:cfg.n_calib], cfg.batch_size)
    t_start = time.perf_counter()
    ann = ann_accuracy(model, x_test, y_test, what="the test batch (x_test)")
    snn, ths = convert_balanced(model, calib, cfg)
    thresholds = Thresholds(snn, calib)
    rule = "trained QCFS λ; p unused" if qcfs_layers(model) else f"p={cfg.p}"
    log(f"ANN accuracy {ann:.2f}% on {len(x_test)} test images; thresholds ({rule}): "
        + ", ".join(f"{float(np.max(to_host(np.asarray(t) if np.ndim(t) == 0 else t))):.3g}" for t in ths))
    table = {v: {} for v in cfg.variants}
    n_cal = min(cfg.n_calib, len(x_calib))
    total = sum(T * (len(x_test) + n_cal * calibration_passes(v, model)) for T in cfg.T for v in cfg.variants)
    with tracking(total, log, what="evaluation") as progress:
        for T in cfg.T:
            for v in cfg.variants:
                t0 = time.perf_counter()
                run = calibrate(snn, v, T, calib, cfg, thresholds, mean, std)
                acc, rate = snn_accuracy(snn, x_test, y_test, T, cfg, mean, std, run)
                table[v][str(T)] = {"acc": round(acc, 2), "loss": round(ann - acc, 2),
                                    "firing_rate": round(rate, 5), **run.steps(T)}
                log(f"T={T:4d} {v:10s} acc {acc:6.2f}%  loss {ann - acc:6.2f}  rate {rate:.4f}  "
                    f"({time.perf_counter() - t0:.1f}s, ETA {duration(progress.eta())})")
    return {"ann_acc": round(ann, 2), "variants": table, "n_test": int(len(x_test)),
            "n_calib": int(min(cfg.n_calib, len(x_calib))), "backend": backend_name(xp_of(x_test)),
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
    pre = {name: r["prerun"] for name, per_t in res["variants"].items() for r in per_t.values()
           if r.get("prerun")}
    if pre:
        lines.append("pre-run (run before the T counted steps, total = T + pre-run): "
                     + ", ".join(f"{n} +{k}" for n, k in pre.items()))
    return "\n".join(lines)
