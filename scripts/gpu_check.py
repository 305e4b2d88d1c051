"""The prepared GPU check: everything the CuPy path must prove, in one run of <= 9 minutes.

Runs from a checkout with no install step and no network (the script puts the checkout on
``sys.path`` and ``PYTHONPATH``), on any CuPy for CUDA 12 or 13 (``cupy-cuda12x`` or
``cupy-cuda13x``; without CuPy or a GPU it ends with one line and exit code 2).

    # the device machine (carry the ignored folder gpu_data/ holding test_batch.bin alone):
    python3 scripts/gpu_check.py --data-dir gpu_data --out "$OUT/gpu_check"
    # anywhere, the same steps at small sizes on the strict CPU stand-in for CuPy (what CI runs):
    python scripts/gpu_check.py --standin --data-dir <test-only folder> \\
        --n-test 20 --n-calib 16 --T 4 --skip-tests --out <folder>/gpu_check

Steps, the most telling first, each a subprocess with its own time limit (LIMITS: 540 s in
all, the default ``--budget``); a step with less than MIN_STEP_S left is skipped and said so,
so one slow or failed step does not hide the rest:
1. ``python -m icsnn_np.demo`` with ``--backend cupy`` and with ``--backend numpy`` on the
   bundled model and slice (``--T 8 --n-test 100`` by default): the accuracies must be equal
   (this also fills CuPy's kernel cache before anything is timed);
2. the demo on all 10,000 CIFAR-10 test images (four variants, T = 32; target <= 60 s on one
   data-centre GPU) from the test batch alone: ``--dataset cifar10 --calib-from cifar10-slice``,
   so the calibration images are the bundled slice's training images (said in the output);
   needs ``--data-dir`` (or ``$ICSNN_DATA``) holding ``test_batch.bin`` (or the python
   ``test_batch``), directly or in ``cifar-10-batches-bin/``;
3. ``python -m icsnn_np.demo --backend cupy --T 32``, the users' command (1,000 slice images);
4. ``python -m icsnn_np.bench --backend cupy``: absolute figures, and PyTorch CUDA eager
   beside them where PyTorch is installed (target: SNN inference >= 1.0x);
5. the CuPy rows of the backend-parametrised tests (``pytest -m gpu``), unless ``--skip-tests``.
On the stand-in (``--standin``) every step runs, at ``--n-test``/``--n-calib``/``--T`` sizes
(default 20, 32, 4), the benchmark ``--quick`` and the tests ``-m standin``.

Writes ``<out>.md``, ``<out>.json`` and ``<out>_bench.json``/``.md``: ``--out`` (on the device
``$OUT/gpu_check``; default ``runs/gpu_check`` in the current folder, or a temporary folder
with ``--standin``), never a committed file; relative ``--out`` and ``--data-dir`` (and
``$ICSNN_DATA``) are the caller's, though the steps run in the checkout;
``results/gpu_check.*`` are committed by hand from a device run. Each step's outcome is read
from its exit status. Exit code 0 when every step that ran passed, none was skipped and the
two demos agree; 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                  # run from a checkout without installing

from icsnn_np import backend  # noqa: E402
from icsnn_np.cli import common as cli  # noqa: E402
from icsnn_np.io.data import DATA_ENV, DatasetError, load_dataset  # noqa: E402
from icsnn_np.io.files import atomic_write  # noqa: E402

# Seconds per step, in the order they run; their sum is the default budget (9 minutes, so the
# whole check, GPU start-up aside, fits one 10-minute device command).
LIMITS = {"pair": 60, "pair_numpy": 60, "test_batch": 150, "users": 60, "bench": 100, "tests": 110}
BUDGET_S = sum(LIMITS.values())
MIN_STEP_S = 20         # a step with less time than this left is skipped (and said so)
TARGET_S = 60           # the 10,000-image demo's evaluation time target on one GPU


def run_step(name, cmd, limit, env, log, deadline):
    """Run one step; return its record (command, limit, exit code, seconds, output tail, JSON).

    The step gets ``limit`` seconds, or what is left before ``deadline``; with less than
    MIN_STEP_S left it is not started (rc "skipped")."""
    left = deadline - time.perf_counter()
    rec = {"step": name, "command": " ".join(cmd), "json": None, "limit": limit}
    if left < min(MIN_STEP_S, limit):
        log(f"{name}: skipped, {left:.0f} s of the budget left")
        return dict(rec, rc="skipped", seconds=0.0, tail="", summary="skipped: out of time")
    rec["limit"] = limit = int(min(limit, left))
    log(f"[{time.strftime('%H:%M:%S')}] {name} (limit {limit} s): {' '.join(cmd)}")
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as p:
        try:
            out, err = p.communicate(timeout=limit)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            rc, err = "timeout", err + f"\nstopped after {limit} s"
        except KeyboardInterrupt:      # Ctrl-C to this process alone: the step ends as on a
            stop_child(p)              # terminal (its own cleanup: locks, temporary files)
            raise
    rec.update(rc=rc, seconds=round(time.perf_counter() - t0, 1),
               tail=(out[-1500:] + "\n" + err[-1500:]).strip())
    try:
        rec["json"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    except (json.JSONDecodeError, IndexError):
        rec["json"] = None
    log(f"    -> rc {rc} in {rec['seconds']} s")
    return rec


def stop_child(p, wait_s: float = 10.0):
    """Send the step SIGINT and give it ``wait_s`` to clean up; kill it after that."""
    p.send_signal(signal.SIGINT)
    try:
        p.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:    # it ignores SIGINT (started in the background)
        p.kill()
        p.wait()


def demo_accs(rec):
    """(ANN accuracy, {variant: {T: acc}}) from a ``demo --json`` record, or None."""
    j = rec.get("json") or {}
    if "variants" not in j:
        return None
    return j.get("ann_acc"), {v: {t: r["acc"] for t, r in per_t.items()}
                              for v, per_t in j["variants"].items()}


def outcome(rec) -> str:
    """What a step's exit status says: passed (exit 0), failed (exit N, its last line), or
    stopped at its time limit."""
    if rec["rc"] == 0:
        return "passed (exit 0)"
    last = next((ln for ln in reversed(rec.get("tail", "").splitlines()) if ln.strip()), "")
    what = "stopped at its time limit" if rec["rc"] == "timeout" else f"failed (exit {rec['rc']})"
    return what + (f": {last.strip()}" if last else "")


def demo_summary(rec, target=False):
    acc = demo_accs(rec)
    if rec["rc"] == "skipped":
        return rec["summary"]
    if acc is None:
        return outcome(rec) + ("; it printed no JSON result" if rec["rc"] == 0 else "")
    if rec["rc"] != 0:
        return outcome(rec)
    j = rec["json"]
    s = (f"{j['n_test']} images, ANN {acc[0]}%, SNN {acc[1]}; calibration: "
         f"{j.get('images', {}).get('calibration', '?')}; evaluation {j['seconds']} s")
    return s + (f" (target <= {TARGET_S} s: {'met' if j['seconds'] <= TARGET_S else 'not met'})"
                if target else "")


def bench_summary(rec, path: Path):
    if rec["rc"] == "skipped":
        return rec["summary"]
    if rec["rc"] != 0:
        return outcome(rec)
    if not path.is_file():
        return f"passed (exit 0), but its results file {path} is missing"
    b = json.loads(path.read_text())
    s, tr = b.get("snn", {}), b.get("train", {})
    fmt = lambda v, f="{:.0f}": "-" if v is None else f.format(v)  # noqa: E731
    rec["bench"] = b
    return (f"SNN {fmt(s.get('ours_rate'))} img*steps/s (PyTorch CUDA eager "
            f"{fmt(s.get('torch_rate'))}, ratio {fmt(s.get('ratio'), '{:.2f}x')} (target >= "
            f"1.0x), agreement {s.get('agreement')}); training {fmt(tr.get('ours_rate'))} img/s")


def markdown(res) -> str:
    m = res["machine"]
    lines = ["# GPU check", "", f"Command: `{res['command']}`", "",
             f"Machine: {res['device']}; {m['cpu']}, {m['cores']} CPUs; Python {m['python']}, "
             f"NumPy {m['numpy']}.", "",
             f"{res['seconds']:.0f} s in all (budget {res['budget']:.0f} s); "
             f"{'all passed' if res['ok'] else 'NOT all passed'}.",
             "", "| step | limit s | exit | seconds | result |", "|---|---:|---:|---:|---|"]
    for r in res["steps"]:
        lines.append(f"| {r['step']} | {r['limit']} | {r['rc']} | {r['seconds']} | {r['summary']} |")
    lines += [""] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def scrubber(*paths):
    """``text -> text`` with the machine's absolute paths replaced: the Python executable by
    ``python``, then each ``(path, name)`` (the output folder by ``$OUT``, the checkout by
    ``.``, an absolute data folder by ``$DATA``), longest first: results get committed."""
    pairs = {(sys.executable, "python")}
    for q, name in paths:                  # as given (when absolute) and resolved
        pairs |= {(str(p), name) for p in (Path(q), Path(q).resolve()) if p.is_absolute()}
    pairs = sorted(pairs, key=lambda kv: -len(kv[0]))

    def scrub(text: str) -> str:
        for path, name in pairs:
            text = text.replace(path, name)
        return text
    return scrub


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    import numpy as np  # noqa: PLC0415
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__}


def device_name(standin: bool) -> str:
    """The GPU, CuPy and CUDA versions; a missing CuPy or GPU raises BackendError (one line)."""
    if standin:
        return "the CuPy stand-in on the CPU (icsnn_np.testing.cupy_standin)"
    cp = backend.get_xp("cupy")
    rt = cp.cuda.runtime
    name = rt.getDeviceProperties(cp.cuda.Device().id)["name"]
    name = name.decode() if isinstance(name, bytes) else str(name)
    v = lambda n: f"{n // 1000}.{n % 1000 // 10}"  # noqa: E731 - CUDA's 12040 -> 12.4
    return (f"GPU {name}, CuPy {cp.__version__}, CUDA runtime {v(rt.runtimeGetVersion())}, "
            f"driver {v(rt.driverGetVersion())}")


def find_test_batch(data_dir, explicit: bool):
    """(folder, test images, the file or folder read) of the CIFAR-10 test batch, or None
    (none given, or ``$ICSNN_DATA`` without it). A folder that was
    given (``--data-dir``) but holds no test batch is bad input: DatasetError, one line."""
    if not data_dir:
        return None
    try:
        ds = load_dataset("cifar10", data_dir, test_only=True)
    except DatasetError as e:
        if not explicit:
            return None
        if "not found in" in str(e):               # nothing there, as opposed to a bad file
            raise DatasetError(f"--data-dir {data_dir} holds no CIFAR-10 test batch: place "
                               f"test_batch.bin (cifar-10-batches-bin, 30,730,000 bytes) or the "
                               f"python test_batch there") from None
        raise DatasetError(f"--data-dir {data_dir}: {e}") from None
    return str(data_dir), len(ds.x_test), ds.source


def parse_args(argv):
    p = cli.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--standin", action="store_true",
                   help="run on the strict CPU stand-in for CuPy (small sizes; no GPU needed)")
    p.add_argument("--skip-tests", action="store_true",
                   help="leave out the pytest step (for CI, which runs the tests itself)")
    p.add_argument("--n-test", type=cli.count("--n-test"), default=None,
                   help="test images of the cupy/numpy demo pair (and of every demo on the "
                        "stand-in); default 100, on the stand-in 20")
    p.add_argument("--n-calib", type=cli.count("--n-calib"), default=None,
                   help="calibration images; default 256, on the stand-in 32")
    p.add_argument("--T", type=cli.steps(), default=None,
                   help="time steps of the demo pair (and of every demo on the stand-in); "
                        "default 8, on the stand-in 4")
    p.add_argument("--budget", type=seconds, default=BUDGET_S, help="seconds for all steps (> 0)")
    p.add_argument("--data-dir", default=None, help="folder holding the CIFAR-10 test batch "
                   f"(test_batch.bin alone suffices; default ${DATA_ENV}, where it is looked for)")
    p.add_argument("--out", default=None, help="output stem (default runs/gpu_check in the current "
                                               "folder; with --standin a temporary folder)")
    a = p.parse_args(argv)
    # the steps run in the checkout: a relative path means the caller's folder, so make it
    # absolute here (else a step would read, or write, relative to the checkout)
    a.data_dir = None if a.data_dir is None else str(Path(a.data_dir).absolute())
    a.out = None if a.out is None else str(Path(a.out).absolute())
    return a


def seconds(text: str) -> float:
    """``--budget``: a finite number of seconds > 0 (NaN, inf, 0 and negatives refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget: expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"--budget must be a finite number of seconds > 0, got {text}")
    return v


def _main(argv):
    a = parse_args(argv)
    standin = a.standin
    for k, gpu_size, standin_size in (("n_test", 100, 20), ("n_calib", 256, 32), ("T", 8, 4)):
        if getattr(a, k) is None:
            setattr(a, k, standin_size if standin else gpu_size)
    t0 = time.perf_counter()
    device = device_name(standin)                  # no CuPy / no GPU: one line, exit 2
    env_data = os.environ.get(DATA_ENV)
    data = find_test_batch(a.data_dir or (env_data and str(Path(env_data).absolute())),
                           a.data_dir is not None)
    out = Path(a.out) if a.out else (Path(tempfile.mkdtemp(prefix="icsnn_gpu_check_")) / "gpu_check"
                                     if standin else Path("runs", "gpu_check").absolute())
    cli.check_outputs(out, exts=(".json", ".md", "_bench.json", "_bench.md"))
    deadline = t0 + a.budget
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    if env_data:                            # the caller's folder, not the checkout's
        env[DATA_ENV] = str(Path(env_data).absolute())
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    py, notes, steps = sys.executable, [], []
    log(f"GPU check on {device}; budget {a.budget:.0f} s")
    # on the stand-in every command runs through the wrapper that plugs it in (icsnn_np.testing)
    command = (lambda m: [py, "-m", "icsnn_np.testing.run", m]) if standin else (lambda m: [py, "-m", m])
    demo = command("icsnn_np.demo") + ["--json", "--n-calib", str(a.n_calib)]
    small = ["--T", str(a.T), "--n-test", str(a.n_test)]
    step = lambda name, cmd, key: run_step(name, cmd, LIMITS[key], env, log, deadline)  # noqa: E731

    # 1. the same demo on both backends: equal accuracies
    gpu, cpu = (step(f"demo, bundled model, {be}", demo + ["--backend", be] + small, key)
                for be, key in (("cupy", "pair"), ("numpy", "pair_numpy")))
    same = demo_accs(gpu) is not None and demo_accs(gpu) == demo_accs(cpu)
    gpu["summary"], cpu["summary"] = demo_summary(gpu) + f"; equal to numpy's: {same}", demo_summary(cpu)
    steps += [gpu, cpu]

    # 2. the CIFAR-10 test batch alone (10,000 images on a GPU), calibrated on the slice
    if data is None:
        notes.append(f"no CIFAR-10 test batch (--data-dir or ${DATA_ENV}): the test-batch demo "
                     "was not run" + ("" if standin else f", so the <= {TARGET_S} s target is "
                                      "unmeasured and the check is NOT complete"))
    else:
        n = a.n_test if standin else data[1]
        sizes = small if standin else ["--T", "32", "--n-test", str(n), "--batch-size", "1000"]
        r = step(f"demo, {n:,} CIFAR-10 test images (test batch alone), cupy",
                 demo + ["--backend", "cupy", "--dataset", "cifar10", "--data-dir", str(data[0]),
                         "--calib-from", "cifar10-slice"] + sizes, "test_batch")
        r["summary"] = demo_summary(r, target=not standin)
        steps.append(r)

    # 3. the users' command: T = 32 on the bundled slice (1,000 test images)
    r = step("demo --backend cupy" + (" (small)" if standin else " --T 32 (1,000 slice images)"),
             demo + ["--backend", "cupy"] + (small if standin else ["--T", "32"]), "users")
    r["summary"] = demo_summary(r)
    steps.append(r)

    # 4. the benchmark
    bench_out = cli.with_ext(out, "_bench.json")           # the bench writes <stem>.json and .md
    r = step("bench, cupy", command("icsnn_np.bench") + ["--backend", "cupy", "--force", "--out",
                             str(cli.with_ext(out, "_bench")),
                             *(["--quick"] if standin else ["--repeats", "3"])], "bench")
    r["summary"] = bench_summary(r, bench_out)
    steps.append(r)

    # 5. the backend rows of the tests
    if a.skip_tests:
        notes.append("--skip-tests: the pytest step was left out")
    else:
        marker = "standin" if standin else "gpu"
        # addopts emptied (no -ra noise), so the import mode the tests' layout needs is named
        # here: test files in different folders share base names (tests/*/test_layers.py)
        r = step(f"pytest -m {marker}", [py, "-m", "pytest", "-q", "-m", marker, "-p",
                                         "no:cacheprovider", "-o", "addopts=",
                                         "--import-mode=importlib"], "tests")
        tail = [ln for ln in r["tail"].splitlines() if ln.strip()]
        r["summary"] = next((ln for ln in reversed(tail) if " passed" in ln or " failed" in ln
                             or " error" in ln), tail[-1] if tail else r.get("summary", ""))
        steps.append(r)

    skipped = [s for s in steps if s["rc"] == "skipped"]
    complete = standin or data is not None             # on a GPU the 10,000-image step must run
    notes += [f"{s['step']}: skipped, the {a.budget:.0f} s budget was spent" for s in skipped]
    res = {"command": "python scripts/gpu_check.py " + " ".join(argv), "device": device,
           "machine": machine(), "budget": a.budget, "steps": steps, "notes": notes,
           "seconds": round(time.perf_counter() - t0, 1), "demo_accuracies_equal": same,
           "ok": complete and not skipped and all(s["rc"] == 0 for s in steps) and same}
    scrub = scrubber((out.parent, "$OUT"), (ROOT, "."), *([(data[0], "$DATA")] if data else []))
    atomic_write(cli.with_ext(out, ".json"),
                 lambda f: f.write(scrub(json.dumps(res, indent=1, default=str)).encode()))
    atomic_write(cli.with_ext(out, ".md"), lambda f: f.write(scrub(markdown(res)).encode()))
    print(scrub(markdown(res)))
    print(f"wrote {cli.with_ext(out, '.md')} and .json")
    return 0 if res["ok"] else 1


def main(argv=None):
    """The check; bad input (no CuPy, no GPU, no test batch in --data-dir) is one line, exit 2."""
    return cli.run(_main, argv, kept="the steps run so far are lost (nothing was written)")


if __name__ == "__main__":
    sys.exit(main())
