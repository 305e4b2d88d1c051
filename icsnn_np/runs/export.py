"""Export a converted SNN to one ``.npz`` another framework can run (schema: docs/export.md).

    export_snn("runs/snn.npz", snn, header, T=8, variant="ic-snn", coding={...}, provenance={...})
    snn, meta = load_exported("runs/snn.npz")           # back into this package (NumPy)

The file holds the weights in the network's order (``param/<name>``, PyTorch's state_dict
names), per IF node its V_th and v(0) as used (``v_th/<node>``, ``v0/<node>``), and a JSON
``meta``: the layers in execution order, the neuron (fire on v > V_th, reset by subtraction,
a spike carries V_th), T, the input coding and normalisation, the threshold rule and p, the
variant and the provenance. ``scripts/run_exported_snn_torch.py`` runs one in PyTorch.
"""
from __future__ import annotations

import io
import json

import numpy as np

from ..backend import to_host
from ..beyond.methods import METHODS, PRERUN_METHODS
from ..convert import convert
from ..io.files import atomic_write
from ..io.preprocess import batched
from ..layers import AvgPool2d, Conv2d, Flatten, Linear
from ..models import BasicBlock
from ..neurons import IFNode
from .checkpoints import qcfs_model
from .evaluate import calibrate, convert_balanced

FORMAT, VERSION = "icsnn-np-snn", 1


def ops(modules, prefix_of) -> list:
    """The layers of ``modules`` in execution order, as plain dicts (the meta's ``layers``)."""
    out = []
    for m in modules:
        name = prefix_of(m)
        if isinstance(m, Conv2d):
            out.append({"op": "conv", "weight": f"{name}.weight", "bias": f"{name}.bias"
                        if "bias" in m.params else None, "stride": m.stride, "padding": m.padding})
        elif isinstance(m, Linear):
            out.append({"op": "linear", "weight": f"{name}.weight",
                        "bias": f"{name}.bias" if "bias" in m.params else None})
        elif isinstance(m, AvgPool2d):
            out.append({"op": "avgpool", "kernel": m.kernel_size, "stride": m.stride})
        elif isinstance(m, Flatten):
            out.append({"op": "flatten"})
        elif isinstance(m, IFNode):
            out.append({"op": "if", "node": m.name})
        elif isinstance(m, BasicBlock):
            sc = m.children.get("shortcut")
            out.append({"op": "block", "branch": ops(m.branch(), prefix_of),
                        "shortcut": ops(list(sc.children.values()), prefix_of) if sc else [],
                        "then": ops([m.children["relu2"]], prefix_of)[0]})
        else:
            raise ValueError(f"cannot export a {type(m).__name__} layer")
    return out


def export_snn(path, snn, header: dict, T: int, variant: str, coding: dict, thresholds: dict,
               provenance: dict):
    """Write the SNN (thresholds and v(0) as set) to ``path`` atomically (docs/export.md)."""
    names = {id(m): n for n, m in snn.tree.named_modules()}
    arrays = {f"param/{n}": to_host(v) for n, v in snn.ann.state_dict().items()}
    for node in snn.nodes:
        arrays[f"v_th/{node.name}"] = np.asarray(to_host(node.v_th), np.float32)
        arrays[f"v0/{node.name}"] = np.asarray(to_host(node.v0), np.float32)
    meta = {"format": FORMAT, "format_version": VERSION, "arch": header.get("arch"),
            "num_classes": header.get("num_classes"), "activation": header.get("activation", "relu"),
            "levels": header.get("levels"), "variant": variant, "T": int(T),
            "layers": ops(snn.flat, lambda m: names[id(m)]), "nodes": [n.name for n in snn.nodes],
            "neuron": {"model": "integrate-and-fire", "integrate": "v = v + I(t)",
                       "fire": "spike where v > V_th", "reset": "subtraction: v = v - V_th",
                       "spike_value": "V_th", "v0": "v(0), before step 1"},
            "readout": "the last layer does not spike: prediction = argmax of the time-average "
                       "of its output over the T steps",
            "coding": coding, "normalisation": "x = (pixel / 255 - mean) / std, per channel",
            "thresholds": thresholds, "provenance": provenance}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def check_exportable(variant: str):
    """A variant whose SNN is IF nodes and weights alone (no pre-run, no step currents)."""
    if variant in PRERUN_METHODS or METHODS[variant].recipe is not None:
        raise ValueError(f"--export-snn: {variant} runs more than an IF network (a pre-run or "
                         f"step currents): export one of the paper's variants or ic-snn-fp")


def export_demo(path, ctx: dict, variant: str, T: int, provenance: dict, log):
    """The demo's ``--export-snn``: ``variant`` at T set up as the demo measured it, written."""
    check_exportable(variant)
    cfg, model = ctx["cfg"], ctx["model"]
    calib = batched(ctx["x_calib"][:cfg.n_calib], cfg.batch_size)      # as evaluate_conversion
    snn, _ = convert_balanced(model, calib, cfg)
    calibrate(snn, variant, T, calib, cfg, mean=ctx["mean"], std=ctx["std"])
    coding = {"kind": cfg.coding, "mean": np.ravel(ctx["mean"]).tolist(),
              "std": np.ravel(ctx["std"]).tolist(), "seed": cfg.seed}
    thresholds = {"rule": cfg.threshold_mode, "p": cfg.p}
    export_snn(path, snn, ctx["header"], T, variant, coding, thresholds, provenance)
    log(f"wrote {path}: {variant} at T={T} ({len(snn.nodes)} IF nodes; docs/export.md)")


def load_exported(path):
    """(snn, meta): an exported file rebuilt as this package's SNN (its architecture by name),
    its thresholds and v(0) as written; ``snn.run(x, meta["T"])`` runs it."""
    from ..models import build_model  # noqa: PLC0415
    with np.load(path) as f:
        meta = json.loads(bytes(f["meta"]).decode())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not an exported icsnn-np SNN (format {meta.get('format')!r})")
        model = build_model(meta["arch"], num_classes=meta["num_classes"])
        if meta.get("activation", "relu") == "qcfs":       # holds λ; V_th comes from the file
            model = qcfs_model(model, meta)
        model.load_state_dict({k[len("param/"):]: f[k] for k in f.files if k.startswith("param/")})
        snn = convert(model)
        for node in snn.nodes:                 # a 0-d array becomes the scalar the node had
            v_th, v0 = f[f"v_th/{node.name}"], f[f"v0/{node.name}"]
            node.v_th, node.v0 = (v_th[()] if v_th.ndim == 0 else v_th), (v0[()] if v0.ndim == 0 else v0)
    return snn, meta
