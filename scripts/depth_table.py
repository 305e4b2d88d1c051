"""The README's side-by-side table: the paper's four variants on each network, by depth.

    python scripts/depth_table.py results/vgg_cpu_cifar10.json results/vgg16_cpu_cifar10.json \
        results/resnet20_cifar10.json results/resnet20_cifar10_T64-256.json

reads reproduction JSONs (``python -m icsnn_np.reproduce``; files of one network merge, e.g.
T <= 32 and T = 64 ... 256 run as two processes) and prints one Markdown table: per network
(with its number of IF layers, where conversion error accumulates) and block treatment,
the loss in points of SNN, I-SNN, C-SNN and IC-SNN at each T, and under it the paper's rows
for the network it scales down (Table 2, VGG16; Table 4, ResNet20), once after the networks
given one after another that scale down the same one. Every number says which threshold
search it comes from (p-quantile balancing, layer- or channel-wise, at which p; or SNN
Calibration's MSE search): in the network's line when it has one, in the row's name when a
file holds several (a sweep). Files of another kind (``compare``'s method tables, a
validation, a benchmark) are refused by kind.
"""
from __future__ import annotations

import sys
from pathlib import Path

try:
    import icsnn_np  # noqa: F401
except ImportError:                      # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsnn_np.cli import common as cli  # noqa: E402
from icsnn_np.convert import convert  # noqa: E402
from icsnn_np.models import build_model  # noqa: E402
from icsnn_np.runs.tables import PAPER_ORDER, paper_table_for, read_result  # noqa: E402

MAIN = PAPER_ORDER[::-1]                 # SNN, C-SNN, I-SNN, IC-SNN: the paper's order, worst first


def check_kind(res, path):
    """A reproduction result, not another command's: ``compare`` writes rows of the same
    shape (its pre-run steps tell it apart), whose numbers would mix methods and searches."""
    settings = res.get("settings") if isinstance(res.get("settings"), dict) else {}
    if "prerun" in res or "pre-run steps" in settings or \
            str(res.get("command", "")).startswith("python -m icsnn_np.compare"):
        raise ValueError(f"{path}: not a reproduction result: a comparison of methods "
                         f"(python -m icsnn_np.compare); give the JSON of python -m icsnn_np.reproduce")
    return res


def search_of(row, res) -> str:
    """The threshold search of a row: 'MSE V_th' or '<layer|channel>-wise V_th, p = ...'."""
    settings = res["settings"]
    thr = row.get("thresholds") or settings.get("thresholds") or \
        str(settings.get("threshold", "layer")).replace("-wise", "")
    if thr == "mse":
        return "MSE V_th (SNN Calibration's search)"
    return f"{thr}-wise V_th, p = {row.get('p', settings.get('p'))}"


def load(paths):
    """{arch: {"ann": acc, "n": images, "loss": {(block, search, label): {T: loss}}}}, files
    merged; files of one network must agree on the ANN accuracy (same checkpoint and images)."""
    nets = {}
    for path in paths:
        res = check_kind(read_result(path), path)   # an empty or foreign file: one line naming it
        arch = res.get("arch") or res["settings"].get("model")
        if not isinstance(arch, str):
            raise ValueError(f"{path}: names no network (arch {arch!r})")
        net = nets.setdefault(arch, {"ann": res["ann_acc"], "n": res["n_test"], "loss": {}})
        if (net["ann"], net["n"]) != (res["ann_acc"], res["n_test"]):
            raise ValueError(f"{path}: ANN {res['ann_acc']}% on {res['n_test']} images, but an "
                             f"earlier file of {arch} has {net['ann']}% on {net['n']}: not the same run")
        default_block = str(res["settings"].get("block treatment", "node")).split("/")[0]
        for r in res["rows"]:
            if r["label"] in MAIN:
                key = (r.get("block", default_block), search_of(r, res), r["label"])
                net["loss"].setdefault(key, {}).update({int(t): m["loss"] for t, m in r["T"].items()})
    return nets


def if_layers(arch: str) -> int:
    return len(convert(build_model(arch)).nodes)


def table(nets) -> str:
    Ts = sorted({t for net in nets.values() for row in net["loss"].values() for t in row})
    lines = ["| network | variant | " + " | ".join(f"T={t}" for t in Ts) + " |",
             "|---|---|" + "---:|" * len(Ts)]
    archs = list(nets)
    for k, (arch, net) in enumerate(nets.items()):
        blocks = sorted({b for b, _, _ in net["loss"]})
        searches = list(dict.fromkeys(s for _, s, _ in net["loss"]))
        head = (f"**{arch}** ({if_layers(arch)} IF layers), ANN {net['ann']:.2f} % on {net['n']:,} images"
                + (f", {searches[0]}" if len(searches) == 1 else ""))
        for block, search, label in [(b, s, lb) for b in blocks for s in searches for lb in MAIN]:
            row = net["loss"].get((block, search, label))
            if row is None:
                continue
            parts = ([f"block {block}"] if len(blocks) > 1 else []) + ([search] if len(searches) > 1 else [])
            name = label + (f" ({'; '.join(parts)})" if parts else "")
            lines.append(f"| {head} | {name} | "
                         + " | ".join(f"{row[t]:.2f}" if t in row else "" for t in Ts) + " |")
            head = ""
        paper, ann, rows = paper_table_for(arch)
        if k + 1 < len(archs) and paper_table_for(archs[k + 1])[0] == paper:
            continue                     # the next network scales down the same one: rows once, after it
        head = f"paper, {paper}, ANN {ann:.2f} %"
        for label in MAIN:
            if label in rows:
                lines.append(f"| {head} | {label} | "
                             + " | ".join(f"{rows[label].get(str(t), ''):}" for t in Ts) + " |")
                head = ""
    return "\n".join(lines) + "\n"


def main(argv=None):
    """Print the table; 0, or 2 for bad input."""
    return cli.run(_main, argv)


def _main(argv):
    p = cli.ArgumentParser(prog="python scripts/depth_table.py", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="reproduction JSON files")
    a = p.parse_args(argv)
    print(table(load(a.results)), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
