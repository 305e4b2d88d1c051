"""The prepared GPU check: everything the CuPy path must prove, in one run of < 10 minutes.

    python scripts/gpu_check.py                  # on a machine with CuPy and a CUDA GPU
    python scripts/gpu_check.py --standin        # anywhere: the same steps, small, on the
                                                 # strict CPU stand-in for CuPy
    python scripts/gpu_check.py --standin --skip-tests --n-test 20 --T 4   # what CI runs

Steps (each a subprocess with its own time limit inside one overall budget, so one failure
or a slow step does not hide the rest; the most telling first):
1. ``python -m icsnn_np.demo`` with ``--backend cupy`` and with ``--backend numpy`` on the
   bundled model and slice (``--T 8 --n-test 100`` by default): the accuracies must be equal;
2. ``python -m icsnn_np.demo --backend cupy --T 32`` on the bundled model and its 1,000
   slice test images, four variants (GPU only);
3. the demo on all 10,000 CIFAR-10 test images (four variants, T = 32; target <= 60 s on
   one data-centre GPU) when the data is there (``$ICSNN_DATA`` or ``--data-dir``; GPU only);
4. ``python -m icsnn_np.bench --backend cupy``: absolute figures, and PyTorch CUDA eager
   beside them where PyTorch is installed (target: SNN inference >= 1.0x); ``--quick`` sizes
   on the stand-in;
5. the CuPy rows of the backend-parametrised tests (``pytest -m gpu``; ``-m standin`` on the
   stand-in), unless ``--skip-tests`` (CI runs the stand-in rows in its own pytest run).

Writes ``results/gpu_check.{md,json}`` on a GPU; with ``--standin`` a temporary folder
unless ``--out`` is given (it never overwrites committed results in a quick run). The exit
code is 0 when every step that ran passed and the two demos agree.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                  # run from a checkout without installing

from icsnn_np.io.files import atomic_write  # noqa: E402

BUDGET_S = 560          # the whole check, GPU start-up aside: under 10 minutes
MIN_STEP_S = 30         # a step with less time than this left is skipped (and said so)


def run_step(name, cmd, limit, env, log, deadline):
    """Run one step; return its record (command, exit code, seconds, output tail, JSON).

    The step gets ``limit`` seconds, or what is left before ``deadline``; with less than
    MIN_STEP_S left it is not started (rc "skipped")."""
    left = deadline - time.perf_counter()
    rec = {"step": name, "command": " ".join(cmd), "json": None}
    if left < MIN_STEP_S:
        log(f"{name}: skipped, {left:.0f} s of the budget left")
        return dict(rec, rc="skipped", seconds=0.0, tail="", summary="skipped: out of time")
    limit = int(min(limit, left))
    log(f"[{time.strftime('%H:%M:%S')}] {name} (limit {limit} s): {' '.join(cmd)}")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        text = lambda v: v.decode(errors="replace") if isinstance(v, bytes) else (v or "")  # noqa: E731
        rc, out, err = "timeout", text(e.stdout), text(e.stderr) + f"\nstopped after {limit} s"
    rec.update(rc=rc, seconds=round(time.perf_counter() - t0, 1),
               tail=(out[-1500:] + "\n" + err[-1500:]).strip())
    try:
        rec["json"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    except (json.JSONDecodeError, IndexError):
        rec["json"] = None
    log(f"    -> rc {rc} in {rec['seconds']} s")
    return rec


def demo_accs(rec):
    """(ANN accuracy, {variant: {T: acc}}) from a ``demo --json`` record, or None."""
    j = rec.get("json") or {}
    if "variants" not in j:
        return None
    return j.get("ann_acc"), {v: {t: r["acc"] for t, r in per_t.items()}
                              for v, per_t in j["variants"].items()}


def markdown(res) -> str:
    lines = ["# GPU check", "", f"Command: `{res['command']}`; {res['device']}; "
             f"{res['seconds']:.0f} s in all; {'all passed' if res['ok'] else 'NOT all passed'}.",
             "", "| step | exit | seconds | result |", "|---|---:|---:|---|"]
    for r in res["steps"]:
        lines.append(f"| {r['step']} | {r['rc']} | {r['seconds']} | {r.get('summary', '')} |")
    lines += [""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def device_name(standin: bool) -> str:
    if standin:
        return "the CuPy stand-in on the CPU (icsnn_np.testing.cupy_standin)"
    from icsnn_np import backend  # noqa: PLC0415
    if not backend.cupy_available():
        return "no usable GPU: " + str(backend._cupy_error)
    cp = backend.get_xp("cupy")
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    return f"GPU {name.decode() if isinstance(name, bytes) else name}, CuPy {cp.__version__}"


def main(argv=None):
    """The check; 0 when every step passed, 1 otherwise, 130 on Ctrl-C (one line)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); nothing was written (the report is written at the end)",
              file=sys.stderr, flush=True)
        return 130


def _main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--standin", action="store_true",
                   help="run on the strict CPU stand-in for CuPy (small sizes; no GPU needed)")
    p.add_argument("--skip-tests", action="store_true",
                   help="leave out the pytest step (for CI, which runs the tests itself)")
    p.add_argument("--n-test", type=int, default=100, help="test images of the cupy/numpy demo pair")
    p.add_argument("--n-calib", type=int, default=256, help="calibration images of the demo pair")
    p.add_argument("--T", type=int, default=8, help="time steps of the demo pair")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all steps")
    p.add_argument("--data-dir", default=os.environ.get("ICSNN_DATA"))
    p.add_argument("--out", default=None, help="output stem (default results/gpu_check; "
                                               "--standin: a temporary folder)")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    deadline = t0 + a.budget
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    if a.standin:
        env["ICSNN_CUPY_STANDIN"] = "1"
    else:
        env.pop("ICSNN_CUPY_STANDIN", None)
    out = Path(a.out) if a.out else (Path(tempfile.mkdtemp(prefix="icsnn_gpu_check_")) / "gpu_check"
                                     if a.standin else ROOT / "results" / "gpu_check")
    out.parent.mkdir(parents=True, exist_ok=True)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    py, notes, steps = sys.executable, [], []
    device = device_name(a.standin)
    log(f"GPU check on {device}")
    demo = [py, "-m", "icsnn_np.demo", "--json"]

    # 1. the same demo on both backends: equal accuracies
    pair = ["--T", str(a.T), "--n-test", str(a.n_test), "--n-calib", str(a.n_calib)]
    gpu, cpu = (run_step(f"demo, bundled model, {be}", demo + ["--backend", be] + pair, 240, env, log,
                         deadline) for be in ("cupy", "numpy"))
    same = demo_accs(gpu) is not None and demo_accs(gpu) == demo_accs(cpu)
    for r in (gpu, cpu):
        acc = demo_accs(r)
        r["summary"] = (f"T={a.T}, {a.n_test} images: ANN {acc[0]}%, SNN {acc[1]}; "
                        f"evaluation {r['json'].get('seconds')} s" if acc else "failed")
    gpu["summary"] += f"; equal to numpy's: {same}"
    steps += [gpu, cpu]

    # 2. the users' command: T = 32 on the bundled slice (1,000 test images)
    if not a.standin:
        r = run_step("demo --backend cupy --T 32 (1,000 slice test images)",
                     demo + ["--backend", "cupy", "--T", "32"], 240, env, log, deadline)
        acc = demo_accs(r)
        r["summary"] = (f"ANN {acc[0]}%, SNN {acc[1]}; evaluation {r['json'].get('seconds')} s"
                        if acc else "failed")
        steps.append(r)

    # 3. all 10,000 CIFAR-10 test images
    data = Path(a.data_dir or "~/.cache/icsnn_np").expanduser()
    has_cifar = any((data / d).is_dir() for d in ("cifar-10-batches-bin", "cifar-10-batches-py"))
    if not a.standin and has_cifar:
        r = run_step("demo, 10,000 CIFAR-10 test images, T=32, cupy",
                     demo + ["--backend", "cupy", "--dataset", "cifar10", "--data-dir", str(data),
                             "--n-test", "10000", "--batch-size", "1000", "--T", "32"], 300, env, log,
                     deadline)
        acc, secs = demo_accs(r), (r.get("json") or {}).get("seconds")
        r["summary"] = (f"ANN {acc[0]}%, SNN {acc[1]}; evaluation {secs} s (target <= 60 s: "
                        f"{'met' if secs <= 60 else 'not met'})" if acc else "failed")
        steps.append(r)
    elif a.standin:
        notes.append("the stand-in runs the demo pair at small sizes only: T=32 on 1,000 and "
                     "10,000 images are GPU steps")
    else:
        notes.append(f"CIFAR-10 not found in {data}: the 10,000-image demo was not run")

    # 4. the benchmark
    bench_out = out.with_name(out.name + "_bench.json")
    r = run_step("bench, cupy", [py, "-m", "icsnn_np.bench", "--backend", "cupy", "--out", str(bench_out),
                                 *(["--quick"] if a.standin else ["--repeats", "3"])], 300, env, log,
                 deadline)
    if r["rc"] == 0 and bench_out.is_file():
        b = json.loads(bench_out.read_text())
        s, tr = b.get("snn", {}), b.get("train", {})
        fmt = lambda v, f="{:.0f}": "-" if v is None else f.format(v)  # noqa: E731
        r["summary"] = (f"SNN {fmt(s.get('ours_rate'))} img*steps/s (PyTorch CUDA eager "
                        f"{fmt(s.get('torch_rate'))}, ratio {fmt(s.get('ratio'), '{:.2f}x')} "
                        f"(target >= 1.0x), agreement {s.get('agreement')}); training "
                        f"{fmt(tr.get('ours_rate'))} img/s")
        r["bench"] = b
    else:
        r["summary"] = "failed"
    steps.append(r)

    # 5. the backend rows of the tests
    if a.skip_tests:
        notes.append("--skip-tests: the pytest step was left out")
    else:
        marker = "standin" if a.standin else "gpu"
        r = run_step(f"pytest -m {marker}", [py, "-m", "pytest", "-q", "-m", marker, "-p", "no:cacheprovider",
                                             "-o", "addopts="], 300, env, log, deadline)
        tail = [ln for ln in r["tail"].splitlines() if ln.strip()]
        r["summary"] = next((ln for ln in reversed(tail) if " passed" in ln or " failed" in ln
                             or " error" in ln), tail[-1] if tail else "")
        steps.append(r)

    ran = [s for s in steps if s["rc"] != "skipped"]
    notes += [f"{s['step']}: skipped, the {a.budget:.0f} s budget was spent" for s in steps
              if s["rc"] == "skipped"]
    res = {"command": "python scripts/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "device": device, "steps": steps, "notes": notes, "seconds": time.perf_counter() - t0,
           "demo_accuracies_equal": same, "ok": bool(ran) and all(s["rc"] == 0 for s in ran) and same}
    atomic_write(out.with_suffix(".json"), lambda f: f.write(json.dumps(res, indent=1, default=str).encode()))
    atomic_write(out.with_suffix(".md"), lambda f: f.write(markdown(res).encode()))
    print(markdown(res))
    print(f"wrote {out.with_suffix('.md')} and .json")
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
