"""Bring your own network: import a PyTorch-trained VGG or ResNet-20 from its ``state_dict``.

This package never imports torch. Export on the PyTorch side with two lines, either

    sd = model.state_dict()
    np.savez("net.npz", **{k: v.detach().cpu().float().numpy() for k, v in sd.items()})

or (with the ``safetensors`` package)

    from safetensors.torch import save_file
    save_file(model.state_dict(), "net.safetensors")

and import here:

    model = load_pytorch_state_dict("net.npz", "vgg16_bn", num_classes=10)
    ann = fold_batchnorm(model)            # BN folded into the convs: a plain vgg16
    snn = convert(ann)

Safetensors is read by hand (the format is an 8-byte little-endian header length, a JSON
header {name: {dtype, shape, data_offsets}}, then the raw little-endian data): F64, F32,
F16 and BF16 tensors are read as floats; integer tensors (I64 ``num_batches_tracked``) are
read and ignored. Layouts need no change: PyTorch's conv weights are OIHW and its Linear
weights (out, in), as ours, and its flatten order is NCHW, as ours.

Names are matched in four steps, the first that fits every tensor wins:
1. as they are, after dropping ``num_batches_tracked``, a ``module.`` (DataParallel) or
   ``_orig_mod.`` (torch.compile) prefix, and renaming ``linear`` -> ``fc`` and
   ``downsample`` -> ``shortcut`` where our model has no such name (kuangliu- and
   torchvision-style ResNets);
2. by order: every numbered layer renumbered by its rank among its numbered siblings that
   hold tensors, so a head with Dropouts (``classifier.0/.3/.6``) meets ours
   (``classifier.0/.2/.4``), and a lone numbered layer matches a bare one
   (``classifier.weight`` vs ``classifier.0.weight``);
3. by order across containers: a flat ``nn.Sequential`` (``0.weight``, ``0.bias``,
   ``2.weight``, ..., ``16.weight``, the commonest way a small network is written) meets
   our ``features.*`` / ``classifier.*`` modules in order, when both have as many;
4. otherwise a CheckpointError names the first missing, unexpected or mis-shaped tensor.
A conv followed by BatchNorm may come with or without a bias: a missing one is zero, an
extra one is moved into the BN's running mean (exact, since BN subtracts the mean).
"""
from __future__ import annotations

import json
import math
import struct
import zipfile
from collections import OrderedDict, defaultdict
from pathlib import Path

import numpy as np

from ..layers import Conv2d, Linear
from .batchnorm import ALL_MODELS, BatchNorm2d, build_any, fold_batchnorm
from .checkpoint import CheckpointError
from .files import atomic_write

# safetensors dtype code -> little-endian NumPy dtype ("BF16" has none: decoded by hand)
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
                      "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?"}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in SAFETENSORS_DTYPES.items() if k != "BF16"}
MAX_HEADER_BYTES = 100 << 20          # the safetensors spec's limit
ALIASES = {"linear": "fc", "downsample": "shortcut"}
IGNORED = ("num_batches_tracked",)
_PREFIXES = ("module.", "_orig_mod.")
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")


# --------------------------------------------------------------------------- safetensors
def bf16_to_float32(bits) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32: they are the top half of a float32."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def float32_to_bf16(a) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even, NaN kept NaN."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(np.asarray(a, np.float32)), np.uint16(0x7FC0), rounded)


def read_safetensors(path):
    """Read a ``.safetensors`` file: ({name: array}, metadata dict). BF16 comes back float32.

    Any damage (short file, bad header, unknown dtype, offsets outside the data or not
    matching the shape) raises CheckpointError naming the file and tensor.
    """
    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file ({len(buf)} bytes)")
    (n,) = struct.unpack("<Q", buf[:8])
    if n > min(MAX_HEADER_BYTES, len(buf) - 8):
        raise CheckpointError(f"{path}: header length {n} does not fit in the file "
                              f"({len(buf)} bytes): truncated or not safetensors")
    try:
        header = json.loads(buf[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{path}: the safetensors header is not valid JSON ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    data = memoryview(buf)[8 + n:]
    out = OrderedDict()
    for name, info in header.items():
        try:
            code, shape = info["dtype"], [int(s) for s in info["shape"]]
            b, e = (int(o) for o in info["data_offsets"])
        except (TypeError, KeyError, ValueError) as ex:
            raise CheckpointError(f"{path}: malformed header entry for tensor {name!r}: {info!r}") from ex
        if code not in SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {code}, which is not supported "
                                  f"(supported: {', '.join(SAFETENSORS_DTYPES)})")
        dt = np.dtype(SAFETENSORS_DTYPES[code])
        count = math.prod(shape)
        if min(shape, default=0) < 0 or not 0 <= b <= e <= len(data) or e - b != count * dt.itemsize:
            raise CheckpointError(f"{path}: tensor {name!r} ({code}, shape {tuple(shape)}) has data "
                                  f"offsets [{b}, {e}) that do not fit its shape or the "
                                  f"{len(data)}-byte data section: truncated or corrupt")
        a = np.frombuffer(data, dtype=dt, count=count, offset=b).reshape(shape)
        a = bf16_to_float32(a) if code == "BF16" else a.astype(dt.newbyteorder("="))  # own copy
        out[name] = a
    return out, meta


def save_safetensors(path, tensors: dict, metadata: dict | None = None):
    """Write ``tensors`` ({name: array}) as ``.safetensors`` (atomically).

    A value may be a pair ``("BF16", array)``: float arrays are rounded to bfloat16, uint16
    arrays taken as bfloat16 bit patterns. Other arrays keep their dtype (F64/F32/F16,
    integers, bool). Tensors are stored in the order given, the header padded to 8 bytes.
    """
    header, chunks, off = {}, [], 0
    for name, a in tensors.items():
        if isinstance(a, tuple):
            code, a = a
            if code != "BF16":
                raise ValueError(f"only ('BF16', array) pairs are understood, got {code!r}")
            a = np.asarray(a)
            bits = a if a.dtype == np.uint16 else float32_to_bf16(a)
            raw = np.ascontiguousarray(bits, dtype="<u2").tobytes()
        else:
            a = np.asarray(a)
            code = _CODES.get(a.dtype.newbyteorder("="))
            if code is None:
                raise ValueError(f"tensor {name!r}: dtype {a.dtype} has no safetensors code")
            raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    atomic_write(path, lambda f: f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks)))
    return Path(path)


# --------------------------------------------------------------------------- reading
def read_state_dict(path) -> "OrderedDict[str, np.ndarray]":
    """{name: array} from a ``.npz`` or ``.safetensors`` state_dict export.

    A pickled torch file (.pt/.pth/...) raises CheckpointError saying how to export it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    if path.suffix.lower() in _TORCH_SUFFIXES:
        raise CheckpointError(f"{path}: pickled PyTorch files are not read (that would need torch); "
                              f"export the state_dict to .npz or .safetensors, see docs/import.md")
    with open(path, "rb") as f:
        magic = f.read(4)
    if path.suffix.lower() == ".npz" or magic[:2] == b"PK":
        try:
            with np.load(path, allow_pickle=False) as z:
                return OrderedDict((k, z[k]) for k in z.files if not k.startswith("__"))
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from e
    return read_safetensors(path)[0]


# --------------------------------------------------------------------------- name matching
def _modules(names):
    """Group tensor names by module path: OrderedDict path -> [keys] (in order)."""
    mods = OrderedDict()
    for n in names:
        path, _, key = n.rpartition(".")
        mods.setdefault(path, []).append(key)
    return mods


def _aliased(path: str, own: set) -> str:
    if path in own:
        return path
    new = ".".join(ALIASES.get(p, p) for p in path.split("."))
    return new if new in own else path


def _by_order(paths):
    """path -> path with every numbered component replaced by its rank among its numbered
    siblings that hold tensors; a numbered component without numbered siblings is dropped."""
    sibs = defaultdict(set)
    for p in paths:
        parts = p.split(".")
        for i, c in enumerate(parts):
            if c.isdigit():
                sibs[tuple(parts[:i])].add(c)
    out = {}
    for p in paths:
        parts, new = p.split("."), []
        for i, c in enumerate(parts):
            if c.isdigit():
                s = sorted(sibs[tuple(parts[:i])], key=int)
                if len(s) == 1:
                    continue
                c = str(s.index(c))
            new.append(c)
        out[p] = ".".join(new)
    return out


def _match_modules(own_paths, file_paths):
    """our module path -> the file's, by the rules in the module docstring, or None."""
    own = set(own_paths)
    exact = {_aliased(p, own): p for p in file_paths}
    if set(exact) == own and len(exact) == len(file_paths):
        return exact
    ours, theirs = _by_order(own_paths), _by_order([_aliased(p, own) for p in file_paths])
    inv = {c: p for p, c in ours.items()}
    by_rank = {}
    for f_orig, f in zip(file_paths, [_aliased(p, own) for p in file_paths]):
        if theirs[f] in inv:
            by_rank[inv[theirs[f]]] = f_orig
    if (len(set(ours.values())) == len(ours) and len(by_rank) == len(own) == len(file_paths)
            and len(set(by_rank.values())) == len(file_paths)):
        return by_rank
    return _flat_order(own_paths, file_paths)


def _flat_order(own_paths, file_paths):
    """A flat ``nn.Sequential`` (module paths ``0``, ``2``, ..., ``16``, or all under one
    common name, ``net.0``, ...): our modules with tensors, in order, meet the file's in
    numeric order, when both have as many. Shapes are checked afterwards."""
    parts = [p.split(".") for p in file_paths]
    if not parts or len(own_paths) != len(file_paths):
        return None
    flat = all(len(q) == 1 and q[0].isdigit() for q in parts) or all(
        len(q) == 2 and q[0] == parts[0][0] and q[1].isdigit() for q in parts)
    if not flat:
        return None
    return dict(zip(own_paths, sorted(file_paths, key=lambda p: int(p.rpartition(".")[2]))))


def _conv_bn_pairs(model):
    """{conv path: bn path} for each Conv2d directly followed by a BatchNorm2d."""
    pairs = {}
    for path, m in model.named_modules():
        items = list(m.children.items())
        for (n1, a), (n2, b) in zip(items, items[1:]):
            if isinstance(a, Conv2d) and isinstance(b, BatchNorm2d):
                pre = f"{path}." if path else ""
                pairs[pre + n1] = pre + n2
    return pairs


def _strip_prefixes(tensors):
    changed = True
    while changed and tensors:
        changed = False
        for pre in _PREFIXES:
            if all(k.startswith(pre) for k in tensors):
                tensors = OrderedDict((k[len(pre):], v) for k, v in tensors.items())
                changed = True
    return tensors


def match_state_dict(model, tensors: dict, source: str = "state_dict") -> "OrderedDict[str, np.ndarray]":
    """Map a PyTorch state_dict onto ``model``'s names: {our name: float array}.

    Raises CheckpointError naming the first missing, unexpected or mis-shaped tensor, a
    non-float tensor or one holding NaN/inf.
    """
    tensors = OrderedDict((k, v) for k, v in tensors.items() if k.rpartition(".")[2] not in IGNORED)
    tensors = _strip_prefixes(tensors)
    own = model.state_dict()
    own_mods, file_mods = _modules(own), _modules(tensors)
    where = _match_modules(list(own_mods), list(file_mods))
    if where is None:                         # report against the names as they are
        own_set = set(own_mods)
        where = {}
        for p in file_mods:
            where.setdefault(_aliased(p, own_set), p)

    def fname(our_path, key):
        return f"{where[our_path]}.{key}" if where[our_path] else key

    def label(our_name, file_name):
        return repr(file_name) if file_name == our_name else f"{file_name!r} (our {our_name!r})"

    pairs = _conv_bn_pairs(model)
    out = OrderedDict()
    for name, p in own.items():
        path, _, key = name.rpartition(".")
        f = fname(path, key) if path in where else None
        if f is None or f not in tensors:
            if key == "bias" and path in pairs and path in where:
                out[name] = np.zeros(p.shape, np.float32)    # bias-free conv before BN
                continue
            raise CheckpointError(f"{source}: missing tensor {(f or name)!r} (shape {tuple(p.shape)})")
        a = np.asarray(tensors[f])
        if tuple(a.shape) != tuple(p.shape):
            raise CheckpointError(f"{source}: tensor {label(name, f)} has shape {tuple(a.shape)}, "
                                  f"model expects {tuple(p.shape)}")
        if a.dtype.kind != "f":
            raise CheckpointError(f"{source}: tensor {label(name, f)} has dtype {a.dtype}, "
                                  f"expected floating point")
        if not np.all(np.isfinite(a)):
            raise CheckpointError(f"{source}: tensor {label(name, f)} contains NaN or inf")
        if key == "running_var" and np.any(a < 0):     # sqrt(var + eps) would be NaN when folded
            raise CheckpointError(f"{source}: tensor {label(name, f)} (a BatchNorm running "
                                  f"variance) has a negative value ({float(a.min()):g}); a "
                                  f"variance is >= 0")
        out[name] = a
    used = {fname(n.rpartition(".")[0], n.rpartition(".")[2]) for n in own
            if n.rpartition(".")[0] in where}
    inv = {v: k for k, v in where.items()}
    for f in tensors:
        if f in used:
            continue
        fpath, _, key = f.rpartition(".")
        ours = inv.get(fpath)
        if key == "bias" and ours in pairs and f"{ours}.bias" not in own:
            # a conv bias before BN: BN subtracts the mean, so b moves into running_mean
            rm = f"{pairs[ours]}.running_mean"
            if rm in out and np.shape(tensors[f]) == np.shape(out[rm]):
                out[rm] = out[rm].astype(np.float64) - np.asarray(tensors[f], np.float64)
                continue
        raise CheckpointError(f"{source}: unexpected tensor {f!r}")
    return out


# --------------------------------------------------------------------------- import
def _num_classes(tensors, arch):
    """The output width of our last Linear, read from the tensor the file has for it
    (else from the file's last 2-D weight), or None."""
    model = build_any(arch)
    last = [n for n, m in model.named_modules() if isinstance(m, Linear)][-1]
    tensors = _strip_prefixes(OrderedDict((k, v) for k, v in tensors.items()
                                          if k.rpartition(".")[2] not in IGNORED))
    where = _match_modules(list(_modules(model.state_dict())), list(_modules(tensors))) or {}
    w = tensors.get(f"{where[last]}.weight") if last in where else None
    if w is None or np.ndim(w) != 2:
        ws = [v for k, v in tensors.items() if k.endswith(".weight") and np.ndim(v) == 2]
        w = ws[-1] if ws else None
    return None if w is None else int(np.shape(w)[0])


def import_state_dict(tensors: dict, arch: str, num_classes: int | None = None,
                      source: str = "state_dict", dtype=np.float32, fold: bool = False):
    """Build our ``arch`` and load a PyTorch state_dict ({name: array}) into it; eval mode.

    ``num_classes=None`` reads it from the last Linear layer. ``fold=True`` returns the
    BN-folded plain model (see ``batchnorm.fold_batchnorm``).
    """
    if arch not in ALL_MODELS:
        raise ValueError(f"unknown model {arch!r}; known models: {', '.join(sorted(ALL_MODELS))}")
    if num_classes is None:
        num_classes = _num_classes(tensors, arch) or 10
    model = build_any(arch, num_classes=num_classes, dtype=dtype)
    try:
        matched = match_state_dict(model, tensors, source=source)
    except CheckpointError as e:
        has_bn = any(k.endswith(".running_mean") for k in tensors)
        if has_bn != arch.endswith("_bn") and (arch + "_bn" in ALL_MODELS or arch.endswith("_bn")):
            other = arch + "_bn" if has_bn else arch[:-3]
            try:                              # hint only at an arch that would fit the file
                match_state_dict(build_any(other, num_classes=num_classes, dtype=dtype), tensors,
                                 source=source)
            except CheckpointError:
                raise e from None
            raise CheckpointError(f"{e} (the file {'has' if has_bn else 'has no'} BatchNorm "
                                  f"statistics: try arch {other!r})") from e
        raise
    model.load_state_dict(matched)
    model.eval()
    return fold_batchnorm(model, inplace=True) if fold else model


def load_pytorch_state_dict(path, arch: str, num_classes: int | None = None, dtype=np.float32,
                            fold: bool = False):
    """Our ``arch`` model with the weights of a PyTorch ``state_dict`` saved as .npz/.safetensors.

    Raises CheckpointError (naming the tensor) when the file does not fit the architecture.
    """
    return import_state_dict(read_state_dict(path), arch, num_classes, source=str(path),
                             dtype=dtype, fold=fold)
