"""Merge reproduction results of one network, made by separate runs, into one table.

    python scripts/merge_results.py results/resnet20_cifar10.json \
        results/resnet20_cifar10_T64.json results/resnet20_cifar10_T128.json \
        --out results/resnet20_cifar10

A table of hours is faster made as several runs side by side, one per core (T <= 32 in one,
T = 64 in another, ...). Each run writes its own ``.json``; this puts their measurements
into one ``.json``, ``.md`` and ``.png``, as if one run had made them all, with the paired
tests at every T where all four of the paper's rows were measured.

Rows are the same row when their label, variant, p, thresholds (the threshold search:
layer- or channel-wise p-quantile, or MSE), block treatment, readings and compensation
agree; their T columns are joined. Only reproduction results are merged: another kind of
file (``compare``'s method tables, a benchmark, a validation) is refused by kind. The files must be of one network on the
same images (same ANN accuracy, number of test and calibration images, seed, coding, and
the same checkpoint *content*: its SHA-256, which reproduce records; files made before it
did are matched by the checkpoint's name, with a note); a T that two files both measured
must have the same result in both, or nothing is written. The output may be one of the
inputs (a merge only adds measurements), but an existing output is replaced only with
``--force``; the three files are written together, the output stem held while it runs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

try:
    import icsnn_np  # noqa: F401
except ImportError:                      # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icsnn_np.cli import common as cli  # noqa: E402
from icsnn_np.runs.tables import markdown, plot, read_result  # noqa: E402

# what must agree between the files: the same network, images and conversion settings
SAME = ("model", "images", "n_calib", "seed", "coding", "p", "thresholds",
        "default reading", "default granularity", "default compensation", "engine")
NEEDED = ("arch", "command")
ROW_KEY = ("label", "variant", "p", "thresholds", "block", "reading", "comp", "granularity")


def _row_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in ROW_KEY)


def same_checkpoint(results: list[dict], names: list[str], log=None):
    """The files were made with one checkpoint: equal SHA-256 of its content; a file made
    before reproduce recorded it is matched by the checkpoint's name, with a note."""
    first = results[0]
    for res, name in zip(results[1:], names[1:]):
        a, b = first.get("checkpoint_sha256"), res.get("checkpoint_sha256")
        if a and b:
            if a != b:
                raise ValueError(f"{name}: made with another checkpoint than {names[0]} (SHA-256 "
                                 f"{b[:12]}... against {a[:12]}...), whatever their names")
            continue
        na, nb = first["settings"].get("checkpoint"), res["settings"].get("checkpoint")
        if na != nb:
            raise ValueError(f"{name}: setting checkpoint = {nb!r}, but {names[0]} has {na!r}")
        if log is not None:
            log(f"note: {names[0] if not a else name} records no checkpoint hash (made before "
                f"reproduce recorded one): matched with {names[0] if a else name} by the "
                f"checkpoint's name {na!r} only")


def merge(results: list[dict], names: list[str], log=None) -> dict:
    """One result dict holding every row and T of ``results`` (reproduction JSONs)."""
    same_checkpoint(results, names, log)
    first, rows, index = results[0], [], {}
    out = {k: v for k, v in first.items()
           if k not in ("rows", "settings", "command", "seconds", "runs", "merged_runs",
                         "earlier_measurements")}
    settings = dict(first["settings"])
    blocks = []
    for res, name in zip(results, names):
        for k in ("ann_acc", "n_test", "n_calib", "arch"):
            if res.get(k) != first.get(k):
                raise ValueError(f"{name}: {k} = {res.get(k)!r}, but {names[0]} has "
                                 f"{first.get(k)!r}: not the same network and images")
        for k in SAME:
            if res["settings"].get(k) != settings.get(k):
                raise ValueError(f"{name}: setting {k} = {res['settings'].get(k)!r}, but "
                                 f"{names[0]} has {settings.get(k)!r}")
        blocks += [b for b in res["settings"].get("block treatment", "node").split("/") if b not in blocks]
        for row in res["rows"]:
            key = _row_key(row)
            if key not in index:
                index[key] = dict(row, T={})
                rows.append(index[key])
            merged = index[key]["T"]
            for t, m in row["T"].items():
                if t in merged and merged[t] != m:
                    raise ValueError(f"{name}: {row['label']} at T = {t} differs from another file "
                                     f"({m.get('acc')} % against {merged[t].get('acc')} %)")
                merged[t] = m
    for row in rows:                     # T columns in order, whichever file came first
        row["T"] = dict(sorted(row["T"].items(), key=lambda kv: int(kv[0])))
    settings["block treatment"] = "/".join(blocks)
    multi = len({r.get("block") for r in rows}) > 1
    for row in rows:                     # a row of a one-setting run gets a sweep's name for its block
        if multi and not row.get("setting"):
            row["setting"] = f"block {row.get('block', 'node')}"
    runs = {}                            # command -> its run; a merged input brings its runs along
    for res in results:
        for run in res.get("runs") or [{"command": res["command"], "seconds": res.get("seconds", 0.0),
                                        "earlier_measurements": res.get("earlier_measurements", 0)}]:
            runs.setdefault(run["command"], run)
    sha = next((r["checkpoint_sha256"] for r in results if r.get("checkpoint_sha256")), None)
    return dict(out, **({"checkpoint_sha256": sha} if sha else {}), rows=rows, settings=settings,
                runs=list(runs.values()),
                command=" && ".join(runs), merged_runs=len(runs),
                seconds=round(sum(r["seconds"] for r in runs.values()), 1),
                earlier_measurements=sum(r["earlier_measurements"] for r in runs.values()))


def main(argv=None):
    """Write the merged .json, .md and .png; 0, or 2 for bad input."""
    return cli.run(_main, argv)


def _main(argv):
    p = cli.ArgumentParser(prog="python scripts/merge_results.py", description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", help="reproduction JSON files of one network")
    p.add_argument("--out", required=True, help="output path without extension (.json/.md/.png)")
    p.add_argument("--force", action="store_true", help="replace <out>.json/.md/.png if they exist")
    a = p.parse_args(argv)
    cli.check_outputs(a.out, force=a.force)
    with cli.claim(a.out, cli.log_stderr):         # read and write while holding the output
        return _merge(a)


def _merge(a):
    loaded = []
    for path in a.results:
        res = read_result(path)
        settings = res["settings"]
        if "prerun" in res or "pre-run steps" in settings or \
                str(res.get("command", "")).startswith("python -m icsnn_np.compare"):
            raise ValueError(f"{path}: not a reproduction result: a comparison of methods (python "
                             f"-m icsnn_np.compare), whose rows mix methods and threshold searches; "
                             f"merge_results joins runs of python -m icsnn_np.reproduce")
        missing = [k for k in NEEDED if k not in res]
        if missing:
            raise ValueError(f"{path}: not a reproduction result (no {', '.join(missing)})")
        loaded.append(res)
    try:
        res = merge(loaded, a.results, cli.log_stderr)
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"the files are not reproduction results (missing or malformed {e})") from None
    title = f"{res['arch']} on CIFAR-10: ANN vs converted SNNs"
    meta = {"title": title, "settings": res["settings"], "command": res["command"],
            "data": res["settings"].get("images", f"{res['n_test']} images"), "arch": res["arch"]}
    cli.write_outputs(a.out, {".json": json.dumps(res, indent=1).encode(),
                              ".md": markdown(res, meta).encode(), ".png": plot(res, None, title)})
    print(f"wrote {cli.with_ext(a.out, '.md')}, .json, .png: {len(res['rows'])} rows from "
          f"{len(loaded)} file{'s' if len(loaded) > 1 else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
