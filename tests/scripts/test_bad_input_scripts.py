"""Bad input to the scripts (build_slice, bundle_model, depth_table, merge_results,
gpu_check; issue 14 and 25): one line and exit code 2 (130 after Ctrl-C), never a traceback.
The shared cases' checks: tests/bad_input.py.
"""
from __future__ import annotations

import json
import warnings

import pytest

from bad_input import (build_slice, bundle_model, depth_table, merge_results, gpu_check, ctrl_c,
                       Cli, check_cli_case, holding)

from icsnn_np.layers import Flatten, Linear
from icsnn_np.module import Sequential


CLI = [
    # scripts
    Cli("build_slice missing source", "build_slice", ["--src", "{tmp}/nosrc"], 2, "not found: --src must be"),
    Cli("build_slice no source given", "build_slice", [], 2, "the following arguments are required: --src"),
    Cli("build_slice per-class = 0", "build_slice", ["--src", "{tmp}", "--per-class", "0"], 2,
        "--per-class must be an integer >= 1"),
    Cli("build_slice out is a folder", "build_slice", ["--src", "{tmp}", "--out", "{folder}"], 2,
        "is an existing folder"),
    Cli("build_slice Ctrl-C", "build_slice", ["--src", "{tmp}"], 130, "nothing was written",
        patch=ctrl_c(build_slice, "build")),
    Cli("bundle_model missing checkpoint", "bundle_model", ["{missing}"], 2, "does not exist"),
    Cli("bundle_model mean/std on the 0-255 scale", "bundle_model", ["{ck255}"], 2, "0-255"),
    Cli("bundle_model p = 2", "bundle_model", ["{ckpt}", "--p", "2"], 2, "p must be a number in (0, 1]"),
    Cli("bundle_model max-drop < 0", "bundle_model", ["{ckpt}", "--max-drop", "-1"], 2,
        "--max-drop must be >= 0"),
    Cli("bundle_model out is a folder", "bundle_model", ["{ckpt}", "--out", "{folder}"], 2,
        "is an existing folder"),
    Cli("bundle_model Ctrl-C", "bundle_model", ["{ckpt}"], 130, "nothing was written",
        patch=ctrl_c(bundle_model, "load_dataset")),
    Cli("merge_results: one checkpoint name, two contents", "merge_results", ["{resA}", "{resB}"], 2,
        "resB.json: made with another checkpoint than"),
    # 6. scripts and optional paths keep the CLI promise
    Cli("depth_table on an empty file", "depth_table", ["{emptyjson}"], 2,
        "emptyjson.json: not a readable reproduction result"),
    Cli("depth_table on an empty object", "depth_table", ["{objjson}"], 2,
        "objjson.json: not a reproduction result (no ann_acc"),
    Cli("depth_table on a JSON list", "depth_table", ["{listjson}"], 2,
        "listjson.json: not a reproduction result (a JSON list, not an object)"),
    Cli("depth_table on a benchmark JSON", "depth_table", ["{benchjson}"], 2,
        "benchjson.json: not a reproduction result (no ann_acc"),
    Cli("merge_results on a benchmark JSON", "merge_results", ["{resA}", "{benchjson}"], 2,
        "benchjson.json: not a reproduction result"),
    Cli("merge_results Ctrl-C", "merge_results", ["{resA}"], 130, "nothing was written",
        patch=ctrl_c(merge_results, "merge")),
    Cli("depth_table Ctrl-C", "depth_table", ["{resA}"], 130, "nothing was written",
        patch=ctrl_c(depth_table, "load")),
    Cli("bundle_model float16 overflow (checked before anything is written)", "bundle_model",
        ["{big}"], 2, "tensor features.0.weight has values up to 1e+05, beyond float16's range"),
    Cli("gpu_check Ctrl-C", "gpu_check", [], 130, "interrupted (Ctrl-C); the steps run so far are lost (nothing was written)",
        patch=ctrl_c(gpu_check, "run_step"), alone=False),
]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # "train diverges" overflows
@pytest.mark.parametrize("c", CLI, ids=[c.case for c in CLI])
def test_cli_bad_input_is_one_line_and_an_exit_code(c, files, tmp_path, capsys, monkeypatch):
    check_cli_case(c, files, tmp_path, capsys, monkeypatch)


def test_gpu_check_passes_a_ctrl_c_on_to_its_step_which_cleans_up(tmp_path):
    """Ctrl-C sent to gpu_check alone (not its process group) reaches the running step as
    SIGINT, so the step releases its output lock instead of being killed with it held."""
    child = holding(tmp_path / "step")
    assert (tmp_path / "step.lock").exists()
    gpu_check.stop_child(child, wait_s=20)
    assert child.returncode is not None and not (tmp_path / "step.lock").exists()


def test_a_float16_overflow_is_one_line_without_warnings(tmp_path):
    """bundle_model's range check compares in Python floats: no RuntimeWarning before the line."""
    model = Sequential(Flatten(), Linear(4, 2))
    model[1].params["weight"][0, 0] = 1e5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="values up to 1e\\+05, beyond float16's range"):
            bundle_model.check_float16(model, "big.npz")


def test_merge_results_matches_checkpoints_by_content(files, tmp_path, capsys):
    """The same content under two names merges; a file without a hash (made before reproduce
    recorded one) is matched by name, with a note."""
    renamed = json.loads(files["resA"].read_text())
    renamed["settings"]["checkpoint"] = "resnet20_copy.npz"
    (tmp_path / "a2.json").write_text(json.dumps(renamed))
    assert merge_results.main([str(files["resA"]), str(tmp_path / "a2.json"), "--out", str(tmp_path / "m")]) == 0
    legacy = json.loads(files["resA"].read_text())
    del legacy["checkpoint_sha256"]
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    capsys.readouterr()
    assert merge_results.main([str(files["resA"]), str(tmp_path / "old.json"), "--out", str(tmp_path / "n")]) == 0
    assert "records no checkpoint hash" in capsys.readouterr().err
