"""The tutorials: every step runs, shows what its text claims, has solved exercises and an
executed notebook that matches its script.

Each step (``tutorials/NN_*.py``, and the appendices ``A1_*.py``) and each worked solution
(``tutorials/solutions/NN_*.py``) is run as a subprocess in quick mode, as a student or CI
would (``python tutorials/NN_*.py --quick --out TMP``). Their output is parsed:

    RESULT name=value     a key number, checked below against the claim the text makes
    SEE [yes] claim       a "what you should see" conclusion, checked by the step on its own
                          numbers ("SEE [NO]" fails the test)
    FIGURE path           a figure the step wrote
    SOLVED k: answer      exercise k of the step was solved and its checks passed

The generic tests pick up any numbered step, so a new ``08_*.py`` is tested as soon as it
exists. The notebooks (``NN_*.ipynb``, made by ``tutorials/make_notebooks.py``) are read as
JSON: no jupytext or Jupyter is needed here.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PIL = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
STEPS = sorted(p.stem for p in TUTORIALS.glob("*.py") if re.match(r"^(\d\d|A\d)_", p.name))
# BLAS held to one thread: on a 2-core machine shared with other jobs, OpenBLAS's spinning
# threads would double the run time; the results do not depend on it.
ENV = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1"}


def test_steps_are_found():
    assert "00_spiking_networks_in_plain_words" in STEPS and len(STEPS) >= 9, STEPS


# --------------------------------------------------------------------------- running
_RUNS: dict = {}


def run_quick(path: Path, out: Path) -> dict:
    """Run one script in quick mode (once per session) and parse what it printed."""
    if path in _RUNS:
        return _RUNS[path]
    proc = subprocess.run([sys.executable, str(path), "--quick", "--out", str(out)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = {}
    for m in re.finditer(r"^RESULT (\S+)=(\S+)$", proc.stdout, re.M):
        try:
            results[m.group(1)] = float(m.group(2))
        except ValueError:
            results[m.group(1)] = m.group(2)
    parsed = {"results": results, "stdout": proc.stdout,
              "see": re.findall(r"^SEE \[(yes|NO)\] (.*)$", proc.stdout, re.M),
              "figures": [ROOT / p for p in re.findall(r"^FIGURE (.+)$", proc.stdout, re.M)],
              "solved": [int(k) for k in re.findall(r"^SOLVED (\d+):", proc.stdout, re.M)]}
    _RUNS[path] = parsed
    return parsed


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tutorial_figures")


def step_run(name, outdir) -> dict:
    return run_quick(TUTORIALS / f"{name}.py", outdir / name)


def exercises(name) -> list[int]:
    """Numbers of the exercises in the step's "## Exercises" cell."""
    text = (TUTORIALS / f"{name}.py").read_text()
    part = text.split("# ## Exercises", 1)[1].split("# ## What you should see", 1)[0]
    return [int(k) for k in re.findall(r"^# (\d)\. \*\*", part, re.M)]


# --------------------------------------------------------------------------- every step
@pytest.mark.parametrize("name", STEPS)
def test_step_runs_and_shows_what_it_claims(name, outdir):
    r = step_run(name, outdir)
    assert r["see"], f"{name} prints no 'what you should see' conclusions"
    failed = [claim for verdict, claim in r["see"] if verdict != "yes"]
    assert not failed, f"{name}: the quick run does not show: {failed}"
    assert re.search(r"^done in [\d.]+ s \(quick mode\)(; machine load .*)?$", r["stdout"], re.M)
    assert r["stdout"].count("QUICK MODE IS A SMOKE TEST") == 1     # says so, in one banner line
    assert r["figures"], f"{name} wrote no figure"
    for path in r["figures"]:
        assert path.parent == outdir / name, f"{name} wrote {path} outside --out"
        assert path.is_file() and path.stat().st_size > 0, f"{name} did not write {path.name}"
        with PIL.open(path) as im:
            im.verify()                                  # a real, complete image file
        with PIL.open(path) as im:
            assert im.format == ("GIF" if path.suffix == ".gif" else "PNG") and min(im.size) > 50


@pytest.mark.parametrize("name", STEPS)
def test_step_text_has_outcomes_and_exercises(name):
    text = (TUTORIALS / f"{name}.py").read_text()
    assert re.search(r"^# \*\*After this (step|appendix) you can\*\*$", text, re.M), name
    ks = exercises(name)
    assert 2 <= len(ks) <= 4 and ks == list(range(1, len(ks) + 1)), (name, ks)
    assert f"solutions/{name}.py" in text and (TUTORIALS / "solutions" / f"{name}.py").is_file()
    assert "DESIGN.md" not in text, "the design notes are not part of the repository"
    assert max(len(ln) for ln in text.splitlines() if not ln.startswith("# |")) <= 110  # tables may not wrap
    assert len(text.splitlines()) <= 400, f"{name} is long: split it"


@pytest.mark.parametrize("name", STEPS)
def test_solution_solves_every_exercise(name, outdir):
    r = run_quick(TUTORIALS / "solutions" / f"{name}.py", outdir / f"solution_{name}")
    assert r["solved"] == exercises(name), f"{name}: solved {r['solved']}"


@pytest.mark.parametrize("name", STEPS)
def test_readme_and_committed_figures_list_every_figure(name, outdir):
    readme = (TUTORIALS / "README.md").read_text()
    assert f"{name}.py" in readme
    for path in step_run(name, outdir)["figures"]:
        assert path.name in readme, f"tutorials/README.md does not describe {path.name}"
        assert (TUTORIALS / "figures" / path.name).is_file(), \
            f"{path.name} is not in tutorials/figures/: run the step in full mode"


# --------------------------------------------------------------------------- notebooks
def script_cells(path: Path) -> list[tuple[str, str]]:
    """The ``# %%`` cells of a script as (cell type, source), as jupytext reads them:
    markdown cells lose their leading ``# ``; blank lines around a cell are dropped."""
    cells, kind, lines = [], None, []
    for line in path.read_text().splitlines():
        if line.startswith("# %%"):
            if kind is not None:
                cells.append((kind, lines))
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            lines.append(line)
    cells.append((kind, lines))
    out = []
    for kind, lines in cells:
        if kind == "markdown":
            lines = ["" if ln == "#" else ln[2:] if ln.startswith("# ") else ln for ln in lines]
        while lines and not lines[0].strip():
            lines = lines[1:]
        while lines and not lines[-1].strip():
            lines = lines[:-1]
        out.append((kind, "\n".join(lines)))
    return out


@pytest.mark.parametrize("name", STEPS)
def test_notebook_matches_script_and_was_run_in_full_mode(name):
    path = TUTORIALS / f"{name}.ipynb"
    assert path.is_file(), f"{path.name} is missing: python tutorials/make_notebooks.py {name[:2]}"
    nb = json.loads(path.read_text())
    cells = [(c["cell_type"], "".join(c["source"])) for c in nb["cells"]]
    assert cells == script_cells(TUTORIALS / f"{name}.py"), \
        f"{path.name} is out of date: python tutorials/make_notebooks.py {name[:2]}"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name} was not executed"
    text = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                   for c in code for o in c.get("outputs", []))
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    assert "full mode" in text and re.search(r"done in [\d.]+ s \(full mode\)", text), path.name
    assert "SEE [NO]" not in text, f"{path.name}: the full run does not show all it claims"


def test_quick_and_class_mode_never_write_committed_figures():
    sys.path.insert(0, str(TUTORIALS))
    try:
        import _common  # noqa: PLC0415
    finally:
        sys.path.remove(str(TUTORIALS))
    for flag in ("--quick", "--class"):
        run = _common.setup("test", [flag])
        assert run.mode == flag[2:] and run.out.resolve() != _common.FIGURES.resolve()
        run.out.rmdir()                                      # an empty temporary folder
    full = _common.setup("test", [])
    assert full.mode == "full" and full.out.resolve() == _common.FIGURES.resolve()
    assert (full.pick(1, 2), full.pick(1, 2, in_class=3)) == (2, 2)
    klass = _common.setup("test", ["--class", "--out", str(_common.FIGURES)])   # said explicitly
    assert (klass.pick(1, 2), klass.pick(1, 2, in_class=3), klass.quick) == (2, 3, False)


# Class mode (about a minute a step on 2 CPU cores, the bundled model): too slow for every
# test run, so it runs when asked, e.g. before a lecture or a release.
CLASS = os.environ.get("ICSNN_TEST_CLASS") == "1"


@pytest.mark.skipif(not CLASS, reason="class mode takes about a minute a step: ICSNN_TEST_CLASS=1 runs it")
@pytest.mark.parametrize("name", STEPS)
def test_step_shows_its_effect_in_class_mode(name, tmp_path):
    proc = subprocess.run([sys.executable, str(TUTORIALS / f"{name}.py"), "--class", "--out",
                           str(tmp_path)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^done in [\d.]+ s \(class mode\)(; machine load .*)?$", proc.stdout, re.M)
    assert re.search(r"^# threads: ", proc.stdout, re.M), "class mode says how many threads it chose"
    failed = re.findall(r"^SEE \[NO\] (.*)$", proc.stdout, re.M)
    assert not failed and "SEE [yes]" in proc.stdout, f"{name}: class mode does not show: {failed}"


# --------------------------------------------------------------------------- what each step claims
def test_00_if_follows_the_relu_and_lif_does_not(outdir):
    r = step_run("00_spiking_networks_in_plain_words", outdir)["results"]
    assert r["if_rate_maxerr"] <= 1 / 30 + 1e-9
    assert r["lif_silent_below"] == pytest.approx(0.2, abs=0.01)   # (1 - lambda) V_th
    assert r["lif_rate_maxerr"] > 0.1


def test_A1_fast_code_computes_the_definition(outdir):
    r = step_run("A1_arrays_and_convolution", outdir)["results"]
    assert r["conv_im2col_vs_naive_maxdiff"] < 1e-10          # float64: rounding only
    assert r["conv_layer_vs_naive_maxdiff"] < 1e-4            # float32 layer
    assert r["avgpool_vs_naive_maxdiff"] < 1e-12
    assert r["winograd_vs_naive_maxdiff"] < 1e-10
    assert r["fast_vs_reference_same_spikes"] == 1.0
    assert r["fast_vs_reference_max_dv"] < 1e-2


def test_01_training_lowers_the_loss(outdir):
    r = step_run("01_train_a_small_ann", outdir)["results"]
    assert r["vgg_cpu_parameters"] == 307_498
    assert r["last_epoch_loss"] < r["first_epoch_loss"]
    assert r["reloaded_test_acc"] == pytest.approx(r["best_test_acc"], abs=1e-9)


def test_02_rate_is_a_clipped_relu(outdir):
    r = step_run("02_if_neuron", outdir)["results"]
    assert r["demo_rate"] == pytest.approx(8 / 24)            # floor(24 * 0.37) spikes
    for T in (4, 8, 32, 256):                                 # |rate - clip(I)/V_th| <= 1/T
        assert r[f"rate_maxerr_T{T}"] <= 1 / T + 1e-9
    assert r["rate_maxerr_T8_v0_half"] <= 1 / 16 + 1e-9       # v(0) = V_th/2 rounds
    assert r["rate_meanerr_times_T_T8_v0_0"] == pytest.approx(-0.5, abs=0.1)
    assert abs(r["rate_meanerr_times_T_T8_v0_half"]) < 0.1


def test_03_rate_coding_noise_is_binomial(outdir):
    r = step_run("03_rate_coding", outdir)["results"]
    for T in (32, 128, 1024):                                 # sqrt(p(1-p)/T), Fig. 3
        assert r[f"rate_code_rmse_T{T}"] == pytest.approx(r[f"rate_code_theory_T{T}"], rel=0.1)
    assert r["acc_direct_T8"] > r["acc_rate_T8"]


def test_04_accuracy_recovers_with_T(outdir):
    r = step_run("04_threshold_balancing_and_conversion", outdir)["results"]
    for k in (k for k in r if k.startswith("clipped_fraction_layer")):
        assert r[k] == pytest.approx(0.01, abs=1e-3)          # 1 - p of the calibration outputs
    accs = {int(k.split("_T")[1]): v for k, v in r.items() if re.fullmatch(r"snn_acc_T\d+", k)}
    assert accs[max(accs)] > accs[min(accs)] + 10
    assert r["snn_acc_p1.0_T4"] < r["snn_acc_p0.99_T4"]       # the maximum is coarse at low T


def test_05_eq11_holds_and_is_the_whole_gap(outdir):
    r = step_run("05_error_term_and_initial_potential", outdir)["results"]
    assert r["eq11_residual_float64"] < 1e-12 and r["eq11_residual_float64_v0"] < 1e-12
    assert r["eq11_residual_float32"] < 1e-5 and r["eq11_residual_float32_v0"] < 1e-5
    for l in (1, 2, 3):
        assert r[f"gap_minus_error_active_layer{l}"] < 1e-4
        assert r[f"silent_error_is_minus_input_layer{l}"] < 1e-4
        assert r[f"outside_paper_bound_layer{l}"] > 0.1       # silent neurons break (-1, 0)
        assert r[f"mean_abs_error_T32_layer{l}"] < r[f"mean_abs_error_T4_layer{l}"] / 3
        assert r[f"v0_over_vth_alg2_raw_T8_layer{l}"] < 0
        assert r[f"v0_over_vth_alg2_remainder_T8_layer{l}"] == pytest.approx(0.5, abs=0.1)
        assert 0 <= r[f"v0_over_vth_alg2_clip_T8_layer{l}"] <= 1


def test_06_half_compensation_centres_the_error(outdir):
    r = step_run("06_coding_compensation", outdir)["results"]
    assert r["layer1_mean_error_times_T_none"] == pytest.approx(-0.5, abs=0.1)
    assert abs(r["layer1_mean_error_times_T_half"]) < 0.1
    for comp in ("literal", "half"):                          # the remainder reading: ~V_th/2
        for l in (1, 2, 3):
            assert r[f"alg3_{comp}_remainder_R_over_vth_layer{l}"] == pytest.approx(0.5, abs=0.1)
    assert r["sweep_acc_alpha0.5"] > max(r["sweep_acc_alpha0.0"], r["sweep_acc_alpha1.0"])


def test_07_figures_5_6_7(outdir):
    r = step_run("07_looking_inside", outdir)["results"]
    for l in (1, 2, 3):                                       # Fig. 6: IC-SNN fires earlier
        assert r[f"fig6_first_spike_ic-snn_layer{l}"] < r[f"fig6_first_spike_snn_layer{l}"]
    assert r["raster_first_spike_ic-snn"] < r["raster_first_spike_snn"]
    for v in ("snn", "ic-snn"):                               # Fig. 7: closer to the ANN with T
        for l in (1, 3):
            assert r[f"fig7_rmse_{v}_layer{l}_T16"] < r[f"fig7_rmse_{v}_layer{l}_T4"]
