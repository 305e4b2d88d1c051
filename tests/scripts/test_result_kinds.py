"""scripts/depth_table.py and scripts/merge_results.py: every number says which threshold
search it comes from, and a file of another kind (compare's method table) is refused as
such, not blamed on one of its settings."""
from __future__ import annotations

import json

import pytest
from helpers import load_script

depth_table, merge_results = load_script("depth_table"), load_script("merge_results")


def _row(label, thresholds, loss, p=0.999):
    return {"label": label, "variant": label.lower(), "thresholds": thresholds, "p": p,
            "block": "node", "T": {"8": {"acc": 85.0 - loss, "loss": loss}}}


def _reproduction(rows, thresholds="layer"):
    return {"ann_acc": 85.0, "n_test": 100, "arch": "vgg_cpu", "command": "python -m icsnn_np.reproduce",
            "settings": {"model": "vgg_cpu", "p": "0.999", "thresholds": thresholds,
                         "block treatment": "node"}, "rows": rows}


def _comparison():
    """What python -m icsnn_np.compare writes: rows of both searches, pre-run steps."""
    return {"ann_acc": 85.0, "n_test": 100, "n_calib": 64, "T": [8], "prerun": 4, "arch": "vgg_cpu",
            "command": "python -m icsnn_np.compare --thresholds quantile mse",
            "settings": {"model": "vgg_cpu", "p": 0.999, "pre-run steps": 4},
            "rows": [_row("IC-SNN", "quantile", 4.0), _row("IC-SNN", "mse", 1.0)]}


def _write(tmp_path, name, res):
    path = tmp_path / name
    path.write_text(json.dumps(res))
    return str(path)


def test_depth_table_labels_each_threshold_search_of_a_sweep(tmp_path, capsys):
    path = _write(tmp_path, "sweep.json", _reproduction(
        [_row("IC-SNN", "layer", 4.0), _row("IC-SNN", "mse", 1.0)], thresholds="layer/mse"))
    assert depth_table.main([path]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "IC-SNN (" in ln]
    assert any("IC-SNN (layer-wise V_th, p = 0.999)" in ln and "| 4.00 |" in ln for ln in lines)
    assert any("IC-SNN (MSE V_th" in ln and "| 1.00 |" in ln for ln in lines)


def test_depth_table_names_the_one_search_of_a_network(tmp_path, capsys):
    path = _write(tmp_path, "one.json", _reproduction([_row("IC-SNN", "mse", 1.0)], thresholds="mse"))
    assert depth_table.main([path]) == 0
    head = next(ln for ln in capsys.readouterr().out.splitlines() if "**vgg_cpu**" in ln)
    assert "MSE V_th (SNN Calibration's search)" in head


@pytest.mark.parametrize("script", [depth_table, merge_results])
def test_a_comparison_of_methods_is_refused_by_kind(tmp_path, script, capsys):
    path = _write(tmp_path, "methods.json", _comparison())
    args = [path] if script is depth_table else [path, path, "--out", str(tmp_path / "merged")]
    assert script.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "methods.json: not a reproduction result: a comparison of methods" in err[0]
    assert not (tmp_path / "merged.json").exists()
