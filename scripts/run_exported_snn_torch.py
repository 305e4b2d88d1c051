"""Run an SNN exported by icsnn-np (docs/export.md) in PyTorch, without icsnn_np: its accuracy."""
import argparse, json  # noqa: E401
import numpy as np
import torch
import torch.nn.functional as F

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("snn"), p.add_argument("--n", type=int, default=50), p.add_argument("--json", action="store_true")
p.add_argument("--data", default="icsnn_np/assets/cifar10_slice.npz", help="test images (x_test, y_test)")
a = p.parse_args()
f = np.load(a.snn)
meta = json.loads(bytes(f["meta"]).decode())
t = {k: torch.from_numpy(np.asarray(f[k], np.float64)) for k in f.files if k != "meta"}   # float64
assert meta["coding"]["kind"] == "direct", "this script runs direct coding only"
d = np.load(a.data)
m, s = (torch.tensor(meta["coding"][k], dtype=torch.float64).view(1, -1, 1, 1) for k in ("mean", "std"))
x, y, state, spikes = (torch.from_numpy(d["x_test"][:a.n]).double() / 255 - m) / s, d["y_test"][:a.n], {}, {}


def run(ops, h):
    for op in ops:
        if op["op"] in ("conv", "linear"):
            w, b = t["param/" + op["weight"]], t["param/" + op["bias"]] if op["bias"] else None
            h = F.conv2d(h, w, b, op["stride"], op["padding"]) if op["op"] == "conv" else F.linear(h, w, b)
        elif op["op"] in ("avgpool", "flatten"):
            h = F.avg_pool2d(h, op["kernel"], op["stride"]) if op["op"] == "avgpool" else h.flatten(1)
        elif op["op"] == "if":                               # integrate, fire on v > V_th, subtract
            n, th = op["node"], t["v_th/" + op["node"]]
            v = state.get(n, t["v0/" + n].expand_as(h).clone()) + h
            fired = (v > th).double()
            state[n], spikes[n], h = v - fired * th, spikes.get(n, 0) + fired.sum(0), fired * th
        else:
            raise SystemExit(f"{op['op']}: this script runs plain layers only (no residual blocks)")
    return h


out = sum(run(meta["layers"], x) for _ in range(meta["T"])) / meta["T"]
acc = 100 * (out.argmax(1).numpy() == y).mean()
print(json.dumps({"acc": acc, "spikes": {n: c.numpy().tolist() for n, c in spikes.items()}}) if a.json else
      f"{meta['variant']} at T = {meta['T']}: accuracy {acc:.2f} % on {a.n} images")
