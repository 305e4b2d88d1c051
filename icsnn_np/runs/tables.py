"""The reproduction's outputs: Markdown tables in the paper's format and the Fig. 5 plot.

Loss = ANN_ACC - SNN_ACC in points, as the paper's Tables 2-5. Rows come from
``reproduce.run_rows``; each row carries its variant, readings and setting (p, thresholds,
block treatment) and, per T, which images it got right (``pack_correct``), so two rows
are compared on the same images: McNemar's exact test says whether a difference of a
point is the variants or the draw of images.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np

from ..io.files import atomic_write

# The paper's own rows (Tables 2 and 4, CIFAR-10), for comparison. Loss in points.
PAPER_TABLES = {
    "vgg16": ("Table 2, VGG16", 92.09, {
        "I-SNN": {"8": 22.28, "16": 8.14, "32": 1.72, "64": 0.91, "128": 0.75, "256": 0.08},
        "C-SNN": {"8": 28.52, "16": 12.06, "32": 5.25, "64": 2.84, "128": 1.37, "256": 0.13},
        "IC-SNN": {"8": 9.95, "16": 2.97, "32": 1.03, "64": 0.61, "128": 0.29, "256": 0.05}}),
    "resnet20": ("Table 4, ResNet20", 91.46, {
        "I-SNN": {"8": 43.21, "16": 21.75, "32": 4.72, "64": 3.87, "128": 1.06, "256": 0.21},
        "C-SNN": {"8": 57.18, "16": 30.39, "32": 8.25, "64": 5.34, "128": 2.39, "256": 0.27},
        "IC-SNN": {"8": 37.31, "16": 10.23, "32": 3.64, "64": 2.14, "128": 0.81, "256": 0.09}}),
}


def read_result(path) -> dict:
    """A reproduction result (``reproduce``'s ``<out>.json``), its structure checked: an
    object with ann_acc, n_test, settings and rows, each row a label, a variant and its
    measurements by T (each with acc and loss). ValueError naming the file otherwise."""
    try:
        res = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not a readable reproduction result ({type(e).__name__}: "
                         f"{e})") from None

    def need(ok, what):
        if not ok:
            raise ValueError(f"{path}: not a reproduction result ({what})")
    need(isinstance(res, dict), f"a JSON {type(res).__name__}, not an object")
    need(isinstance(res.get("ann_acc"), (int, float)), "no ann_acc, the ANN's accuracy")
    need(isinstance(res.get("n_test"), int) and res["n_test"] >= 1, "no n_test, the image count")
    need(isinstance(res.get("settings"), dict), "no settings")
    need(isinstance(res.get("rows"), list) and res["rows"], "no rows")
    for r in res["rows"]:
        need(isinstance(r, dict) and isinstance(r.get("label"), str) and isinstance(r.get("variant"), str)
             and isinstance(r.get("T"), dict), "a row without label, variant or T")
        for t, m in r["T"].items():
            need(str(t).isdigit() and isinstance(m, dict)
                 and all(isinstance(m.get(k), (int, float)) for k in ("acc", "loss")),
                 f"row {r['label']!r}: a measurement at T={t!r} without acc and loss")
    return res


def paper_table_for(arch: str):
    """The paper's table closest to ``arch``: ResNet-20's for ResNets, else VGG16's."""
    return PAPER_TABLES["resnet20" if arch.startswith("resnet") else "vgg16"]


def binomial_se(acc_percent: float, n: int) -> float:
    """Standard error (points) of an accuracy measured on n images: sqrt(p(1-p)/n)."""
    p = acc_percent / 100.0
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def pack_correct(correct) -> str:
    """Which images a row got right, as hex of the packed bits (2,000 images: 500 characters)."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes().hex()


def unpack_correct(text: str, n: int) -> np.ndarray:
    """The bool array (n,) that ``pack_correct`` packed."""
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


def mcnemar(a, b) -> tuple[int, int, float]:
    """McNemar's exact test of two classifiers on the same images (McNemar 1947; for
    classifiers, Dietterich 1998): (images only ``a`` gets right, images only ``b`` gets
    right, two-sided p-value of "equally accurate"). Images both get right or both get
    wrong say nothing about the difference; under the null each discordant image is a fair
    coin, so p = P(a binomial(n01 + n10, 1/2) is at least as lopsided)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return only_a, only_b, 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))     # exact integers: n may be 2,000
    return only_a, only_b, min(1.0, 2 * tail / 2 ** n)


PAPER_ORDER = ("IC-SNN", "I-SNN", "C-SNN", "SNN")     # the paper's claim: loss IC < I < C < SNN
ALPHA = 0.05


def paired_section(res: dict) -> list[str]:
    """Markdown lines: per setting and T, the loss differences of the paper's four rows in
    the order it claims (IC < I < C < SNN), each with McNemar's p, and whether the order holds."""
    lines = []
    for setting in dict.fromkeys(r.get("setting", "") for r in res["rows"]):
        rows = {r["label"]: r["T"] for r in res["rows"]
                if r.get("setting", "") == setting and r["label"] in PAPER_ORDER}
        Ts = sorted(int(t) for t in rows.get("SNN", {})
                    if all("correct" in rows.get(name, {}).get(t, {}) for name in PAPER_ORDER))
        if not Ts:
            continue
        pairs = list(zip(PAPER_ORDER, PAPER_ORDER[1:]))
        lines += ["", f"Paired comparisons{' (' + setting + ')' if setting else ''}: loss of the first "
                  "minus loss of the second, in points, on the same images; p: McNemar's exact test. "
                  f"A step of the paper's order holds (or is reversed) where p < {ALPHA}; "
                  "otherwise the two are not told apart on these images.", "",
                  "| T | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " | IC < I < C < SNN |",
                  "|---|" + "---|" * (len(pairs) + 1)]
        for t in Ts:
            cells, verdicts = [], []
            for a, b in pairs:
                ca, cb = (unpack_correct(rows[x][str(t)]["correct"], res["n_test"]) for x in (a, b))
                only_a, only_b, p = mcnemar(ca, cb)
                diff = 100.0 * (only_b - only_a) / res["n_test"]     # loss(a) - loss(b)
                cells.append(f"{diff:+.2f} (p={p:.2g})")
                verdicts.append("holds" if p < ALPHA and diff < 0 else
                                "reversed" if p < ALPHA and diff > 0 else "tie")
            if all(v == "holds" for v in verdicts):
                verdict = "holds"
            else:
                bad = [f"{a} vs {b} {v}" for (a, b), v in zip(pairs, verdicts) if v != "holds"]
                verdict = ("fails: " if any(v == "reversed" for v in verdicts) else "not shown: ") \
                    + ", ".join(bad)
            lines.append(f"| {t} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


# What each method's numbers depend on besides the network, T and the thresholds (the
# settings a table names in its row, and two rows that agree on them need one run).
DEPENDS_ON = {"i-snn": ("reading", "granularity"), "c-snn": ("comp",),
              "ic-snn": ("reading", "granularity", "comp"),
              "ic-snn-fp": ("reading", "granularity", "comp"),
              "cos": ("prerun",), "cos-layer": ("prerun",), "srp": ("prerun",)}


def setting_key(variant: str, **opts) -> tuple:
    """What a variant's v(0) depends on: two rows with the same key give the same numbers
    (e.g. "I-SNN remainder" is the I-SNN row when remainder is the default), so run once."""
    return (variant,) + tuple(opts.get(k) for k in DEPENDS_ON.get(variant, ()))


def _uses(variant: str, what: str) -> bool:
    return what in DEPENDS_ON.get(variant, ())


def markdown(res: dict, meta: dict) -> str:
    """The results in the paper's table format, with the settings that produced them."""
    Ts = sorted({int(t) for r in res["rows"] for t in r["T"]})
    multi = len({r.get("setting", "") for r in res["rows"]}) > 1
    data = meta.get("data", f"{res['n_test']} CIFAR-10 test images")
    se = binomial_se(res["ann_acc"], res["n_test"])
    lines = [f"# {meta['title']}", "",
             f"ANN accuracy {res['ann_acc']:.2f}% on {data}. Loss = ANN_ACC - SNN_ACC in points; "
             f"blank = not run at that T. Binomial standard error of one accuracy here: "
             f"±{se:.2f} points."
             + (" A loss marked (+k) ran k pre-run steps before its T counted ones (COS, SRP): "
                "k + T steps in all." if any(m.get("prerun") for r in res["rows"]
                                             for m in r["T"].values()) else ""), "",
             "| Method |" + (" setting |" if multi else "") + " v(0) reading | compensation | ANN_ACC | "
             + " | ".join(f"T{t}-L" for t in Ts) + " |",
             "|---|" + ("---|" if multi else "") + "---|---|---|" + "---|" * len(Ts)]
    for r in res["rows"]:
        cells = [f"{r['T'][str(t)]['loss']:.2f}" + (f" (+{r['T'][str(t)]['prerun']})"
                                                   if r["T"][str(t)].get("prerun") else "")
                 if str(t) in r["T"] else "" for t in Ts]
        v = r["variant"]
        rd = (f"{r['reading']}/{r['granularity']}" if _uses(v, "reading")
              else "Alg. 1" if v == "i-snn-alg1" else "-")
        lines.append(f"| {r['label']} |" + (f" {r.get('setting', '')} |" if multi else "")
                     + f" {rd} | {r['comp'] if _uses(v, 'comp') else '-'} | {res['ann_acc']:.2f} | "
                     + " | ".join(cells) + " |")
    for setting, quant in res.get("quantised_ann", {}).items():     # the T-level ANN (reference)
        cells = [f"{res['ann_acc'] - quant[str(t)]:.2f}" if str(t) in quant else "" for t in Ts]
        lines.append("| *T-level ANN (no SNN): each ReLU rounded to T levels of its V_th* |"
                     + (f" {setting} |" if multi else "") + f" - | - | {res['ann_acc']:.2f} | "
                     + " | ".join(cells) + " |")
    name, ann, rows = paper_table_for(meta.get("arch", ""))
    for label, loss in rows.items():
        cells = [f"{loss[str(t)]:.2f}" if str(t) in loss else "" for t in Ts]
        rd, comp = ("?" if label != "C-SNN" else "-"), ("V/2T" if label != "I-SNN" else "-")
        lines.append(f"| {label} (paper, {name}) |" + (" |" if multi else "")
                     + f" {rd} | {comp} | {ann:.2f} | " + " | ".join(cells) + " |")
    lines += paired_section(res)
    if res.get("best_ic_snn"):
        b = res["best_ic_snn"]
        lines += ["", f"Lowest summed IC-SNN loss: {b['setting']} ("
                  + " / ".join(f"{v:.2f}" for v in b["loss"].values()) + ")."]
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in meta["settings"].items()), "",
              f"Command: `{meta['command']}`", "", wall_time(res)]
    return "\n".join(lines) + "\n"


def wall_time(res: dict) -> str:
    """The time line of a table: a resumed run's time covers its last sitting only, and a
    merged table's (scripts/merge_results.py) is the sum of runs that ran side by side."""
    runs, earlier = res.get("merged_runs", 1), res.get("earlier_measurements", 0)
    text = f"Wall time: {res['seconds'] / 60:.1f} min"
    if runs > 1:
        text += f", the sum of {runs} runs made side by side"
    if earlier and runs > 1:
        text += f" (their last sittings only: {earlier} measurements were made in earlier ones)"
    elif earlier:
        text += f" in the last sitting ({earlier} measurements were made in an earlier one)"
    return text + "."


def save_png(fig, path=None):
    """A matplotlib figure as PNG bytes, closed; written atomically to ``path`` if given."""
    import matplotlib.pyplot as plt  # noqa: PLC0415 - only when a figure is drawn
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    if path is not None:
        atomic_write(path, lambda f: f.write(buf.getvalue()))
    return buf.getvalue()


def plot(res: dict, path: Path | None, title: str, main=("snn", "i-snn", "c-snn", "ic-snn")):
    """Accuracy vs T of the ANN and the paper's four variants (its Fig. 5), with binomial
    error bars (one standard error), one panel per setting; the PNG's bytes, also written
    to ``path`` unless it is None."""
    import matplotlib  # noqa: PLC0415 - only when a figure is drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    settings = list(dict.fromkeys(r.get("setting", "") for r in res["rows"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        rows = [r for r in res["rows"] if r.get("setting", "") == setting and r["variant"] in main
                and r["label"].split(" [")[0] in ("SNN", "I-SNN", "C-SNN", "IC-SNN")]
        Ts = sorted({int(t) for r in rows for t in r["T"]})
        ax.axhline(res["ann_acc"], color="k", ls="--", label=f"ANN ({res['ann_acc']:.1f}%)")
        for r, mk in zip(rows, "osD^"):
            ts = [t for t in Ts if str(t) in r["T"]]
            acc = [r["T"][str(t)]["acc"] for t in ts]
            ax.errorbar(ts, acc, yerr=[binomial_se(a, res["n_test"]) for a in acc], marker=mk,
                        capsize=3, label=r["label"].split(" [")[0])
        ax.set_xscale("log", base=2)
        ax.set_xticks(Ts, [str(t) for t in Ts])
        ax.set_xlabel("time steps T")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{title}\n{setting}" if setting else title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)
