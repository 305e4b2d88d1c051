"""The reproduction's outputs: Markdown tables in the paper's format and the Fig. 5 plot.

Loss = ANN_ACC - SNN_ACC in points, as the paper's Tables 2-5. Rows come from
``reproduce.run_rows``; each row carries its variant, readings and setting (p, thresholds,
block treatment).
"""
from __future__ import annotations

import math
from pathlib import Path

from .checkpoint import atomic_write
from .variants import VARIANTS

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


def paper_table_for(arch: str):
    """The paper's table closest to ``arch``: ResNet-20's for ResNets, else VGG16's."""
    return PAPER_TABLES["resnet20" if arch.startswith("resnet") else "vgg16"]


def binomial_se(acc_percent: float, n: int) -> float:
    """Standard error (points) of an accuracy measured on n images: sqrt(p(1-p)/n)."""
    p = acc_percent / 100.0
    return 100.0 * math.sqrt(max(p * (1 - p), 0.0) / max(n, 1))


def _uses(variant: str, what: str) -> bool:
    return what in VARIANTS[variant].depends_on if variant in VARIANTS else False


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
    name, ann, rows = paper_table_for(meta.get("arch", ""))
    for label, loss in rows.items():
        cells = [f"{loss[str(t)]:.2f}" if str(t) in loss else "" for t in Ts]
        rd, comp = ("?" if label != "C-SNN" else "-"), ("V/2T" if label != "I-SNN" else "-")
        lines.append(f"| {label} (paper, {name}) |" + (" |" if multi else "")
                     + f" {rd} | {comp} | {ann:.2f} | " + " | ".join(cells) + " |")
    if res.get("best_ic_snn"):
        b = res["best_ic_snn"]
        lines += ["", f"Lowest summed IC-SNN loss: {b['setting']} ("
                  + " / ".join(f"{v:.2f}" for v in b["loss"].values()) + ")."]
    lines += ["", "Settings: " + ", ".join(f"{k}={v}" for k, v in meta["settings"].items()), "",
              f"Command: `{meta['command']}`", "", f"Wall time: {res['seconds'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path, title: str, main=("snn", "i-snn", "c-snn", "ic-snn")):
    """Accuracy vs T of the ANN and the paper's four variants (its Fig. 5), with binomial
    error bars (one standard error), one panel per setting."""
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
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
