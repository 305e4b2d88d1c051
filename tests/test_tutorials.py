"""Every tutorial runs in quick mode, writes its figures, and prints the numbers it claims.

Each tutorial is run as a subprocess (`python tutorials/NN_*.py --quick --out TMP`), as a
student or CI would; its `RESULT name=value` lines are parsed and checked against what the
tutorial's text says the reader should see. About a minute in all on 2 CPU cores.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PIL = pytest.importorskip("PIL.Image")

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"

# figures each tutorial must write
FIGURES = {
    "01_arrays_and_convolution": ["01_convolution.png"],
    "02_train_a_small_ann": ["02_training_curves.png", "02_predictions.png"],
    "03_if_neuron_and_rate_coding": ["03_if_neuron.png", "03_rate_vs_input.png",
                                     "03_rate_coded_images.png"],
    "04_threshold_balancing_and_conversion": ["04_activation_histograms.png",
                                              "04_accuracy_vs_T.png", "04_signal_per_layer.png"],
    "05_error_term_and_initial_potential": ["05_eq11_error_term.png", "05_vT_histograms.png",
                                            "05_init_accuracy.png"],
    "06_coding_compensation": ["06_compensation_error_shift.png", "06_compensation_accuracy.png"],
    "07_looking_inside": ["07_fig5_accuracy_vs_T.png", "07_fig6_first_spike.png",
                          "07_fig7_layer_outputs.png"],
}


def test_every_tutorial_is_listed():
    found = sorted(p.stem for p in TUTORIALS.glob("[0-9][0-9]_*.py"))
    assert found == sorted(FIGURES), "a tutorial was added or renamed: list its figures here"
    assert (TUTORIALS / "README.md").is_file()


_RUNS: dict = {}


def run_tutorial(name: str, out: Path):
    """Run one tutorial in quick mode (once per session); return (RESULT numbers, figure folder)."""
    if name in _RUNS:
        return _RUNS[name]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(TUTORIALS / f"{name}.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    results = {}
    for m in re.finditer(r"^RESULT (\S+)=(\S+)$", proc.stdout, re.M):
        try:
            results[m.group(1)] = float(m.group(2))
        except ValueError:
            results[m.group(1)] = m.group(2)
    assert results, f"{name} printed no RESULT lines"
    _RUNS[name] = (results, out)
    return _RUNS[name]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tutorial_figures")


def results_of(name, outdir):
    r, out = run_tutorial(name, outdir)
    for fig in FIGURES[name]:
        path = out / fig
        assert path.is_file() and path.stat().st_size > 0, f"{name} did not write {fig}"
        with PIL.open(path) as im:
            im.verify()                      # a real, complete PNG
        with PIL.open(path) as im:
            assert im.format == "PNG" and min(im.size) > 50
    return r


def test_01_convolution_matches_the_loops(outdir):
    r = results_of("01_arrays_and_convolution", outdir)
    assert r["conv_im2col_vs_naive_maxdiff"] < 1e-10          # float64: rounding only
    assert r["conv_layer_vs_naive_maxdiff"] < 1e-4            # float32 layer
    assert r["avgpool_vs_naive_maxdiff"] < 1e-12
    assert r["winograd_vs_naive_maxdiff"] < 1e-10             # float64: rounding only


def test_02_training_lowers_the_loss(outdir):
    r = results_of("02_train_a_small_ann", outdir)
    assert r["last_epoch_loss"] < r["first_epoch_loss"]
    assert r["reloaded_test_acc"] == pytest.approx(r["best_test_acc"], abs=1e-9)
    assert 0 <= r["best_test_acc"] <= 100


def test_03_rate_is_a_clipped_relu(outdir):
    r = results_of("03_if_neuron_and_rate_coding", outdir)
    assert r["demo_rate"] == pytest.approx(8 / 24)           # floor(24 * 0.37) spikes
    for T in (4, 8, 32, 256):                                # |rate - clip(I)/V_th| <= 1/T
        assert r[f"rate_maxerr_T{T}"] <= 1 / T + 1e-9
    assert r["rate_maxerr_T8_v0_half"] <= 1 / 16 + 1e-9      # v(0) = V_th/2 rounds
    assert r["rate_meanerr_times_T_T8_v0_0"] == pytest.approx(-0.5, abs=0.1)
    assert abs(r["rate_meanerr_times_T_T8_v0_half"]) < 0.1
    # Fig. 3: the time-averaged Bernoulli image converges like 1/sqrt(T)
    assert r["rate_code_rmse_T32"] > r["rate_code_rmse_T128"] > r["rate_code_rmse_T1024"]
    assert r["rate_code_rmse_T1024"] < 0.03


def test_04_accuracy_recovers_with_T(outdir):
    r = results_of("04_threshold_balancing_and_conversion", outdir)
    assert all(r[k] > 0 for k in r if k.startswith("v_th_layer"))
    accs = {int(k.split("_T")[1]): v for k, v in r.items() if re.fullmatch(r"snn_acc_T\d+", k)}
    assert min(accs) == 4 and max(accs) == 64
    assert all(0 <= a <= 100 for a in accs.values())
    assert accs[64] > accs[4]                                 # low T loses accuracy
    assert r["decoded_over_ann_last_layer_T4"] < r["decoded_over_ann_last_layer_T64"]


def test_05_eq11_holds_and_is_the_whole_gap(outdir):
    r = results_of("05_error_term_and_initial_potential", outdir)
    assert r["eq11_residual_float64"] < 1e-9
    assert r["eq11_residual_float64_v0"] < 1e-9
    assert r["eq11_residual_float32"] < 1e-4
    assert r["eq11_residual_float32_v0"] < 1e-4
    layers = sorted({int(k[-1]) for k in r if k.startswith("gap_minus_error_active_layer")})
    assert layers == [1, 2, 3]
    for l in layers:
        assert r[f"gap_minus_error_active_layer{l}"] < 1e-4
        assert r[f"silent_error_is_minus_input_layer{l}"] < 1e-4
        assert r[f"mean_abs_error_T32_layer{l}"] < r[f"mean_abs_error_T4_layer{l}"] / 3
        assert r[f"v0_over_vth_alg2_raw_T8_layer{l}"] < 0          # the negative tail
        assert 0 <= r[f"v0_over_vth_alg2_remainder_T8_layer{l}"] < 1
        assert 0 <= r[f"v0_over_vth_alg2_clip_T8_layer{l}"] <= 1
    for k in ("snn", "alg1", "alg2_raw", "alg2_remainder", "alg2_clip"):
        assert 0 <= r[f"acc_{k}_T8"] <= 100


def test_06_half_compensation_centres_the_error(outdir):
    r = results_of("06_coding_compensation", outdir)
    assert r["layer1_mean_error_times_T_none"] == pytest.approx(-0.5, abs=0.1)
    assert abs(r["layer1_mean_error_times_T_half"]) < 0.1
    assert (r["layer1_mean_error_times_T_none"] < r["layer1_mean_error_times_T_literal"]
            < r["layer1_mean_error_times_T_half"])
    for l in (1, 2, 3):                       # the remainder reading measures about V_th/2
        assert r[f"alg3_half_remainder_R_over_vth_layer{l}"] == pytest.approx(0.5, abs=0.1)
    accs = [v for k, v in r.items() if k.startswith("acc_")]
    assert len(accs) == 7 * 3 and all(0 <= a <= 100 for a in accs)


def test_07_figures_5_6_7(outdir):
    r = results_of("07_looking_inside", outdir)
    for v in ("snn", "i-snn", "c-snn_half", "ic-snn_half", "c-snn_literal", "ic-snn_literal"):
        for T in (4, 8, 16):
            assert 0 <= r[f"fig5_acc_{v}_T{T}"] <= 100
    for l in (1, 2, 3):                       # Fig. 6: IC-SNN fires earlier in every layer
        assert r[f"fig6_first_spike_ic-snn_layer{l}"] < r[f"fig6_first_spike_snn_layer{l}"]
    for v in ("snn", "ic-snn"):               # Fig. 7: outputs approach the ANN as T grows
        for l in (1, 3):
            assert r[f"fig7_rmse_{v}_layer{l}_T32"] < r[f"fig7_rmse_{v}_layer{l}_T8"]
    for T in (8, 16, 32):                     # layer 1: rounding beats flooring
        assert r[f"fig7_rmse_ic-snn_layer1_T{T}"] < r[f"fig7_rmse_snn_layer1_T{T}"]
