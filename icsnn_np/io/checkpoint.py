"""Save and load a model in one ``.npz``: weights by PyTorch-style name + a JSON header.

The header (``__meta__``) records the format version, the architecture name and its build
arguments, and anything the caller adds (normalisation mean/std, accuracy, epoch, ...), so a
checkpoint rebuilds its model without outside knowledge. Writes are atomic (temp file in
the same folder + ``os.replace``): an interrupted save never destroys an existing file.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..backend import to_host
from .batchnorm import ALL_MODELS, build_any
from .files import atomic_write
from .preprocess import check_normalisation

FORMAT = "icsnn-np-checkpoint"
VERSION = 1
ASSETS = Path(__file__).resolve().parent.parent / "assets"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or does not match its model."""


def save_checkpoint(path, model, arch: str, num_classes: int, meta: dict | None = None,
                    dtype=None):
    """Write ``model``'s weights and header to ``path`` atomically.

    ``dtype`` (e.g. ``np.float16``) stores weights in a smaller type; they are cast back to
    float32 on load.
    """
    header = {"format": FORMAT, "version": VERSION, "arch": arch, "num_classes": int(num_classes),
              **(meta or {})}
    arrays = {}
    for name, arr in model.state_dict().items():
        a = to_host(arr)
        arrays[name] = a.astype(dtype) if dtype is not None else a
    arrays["__meta__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return Path(path)


def bundled_models() -> dict:
    """{name: path} of the trained models the package ships (``assets/<name>_cifar10.npz``)."""
    return {f.name[:-len("_cifar10.npz")]: f for f in sorted(ASSETS.glob("*_cifar10.npz"))}


def resolve_checkpoint(name_or_path) -> Path:
    """A checkpoint file from a path or the name of a bundled model (``vgg_cpu``, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = bundled_models()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    _not_a_file(path)
    raise CheckpointError(f"checkpoint {path} does not exist (bundled models by name: "
                          f"{', '.join(bundled) or 'none'})")


def _not_a_file(path: Path):
    """A CheckpointError if ``path`` exists but is not a regular file."""
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    if path.exists():
        raise CheckpointError(f"checkpoint {path} is not a regular file (a device, pipe or socket), "
                              f"not a checkpoint")


def read_checkpoint(path):
    """Return (header dict, {name: float32 array}); raise CheckpointError on any damage."""
    path = Path(path)
    if not path.is_file():
        _not_a_file(path)
        raise CheckpointError(f"checkpoint {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise CheckpointError(f"{path} is a single array (.npy), not an icsnn-np checkpoint archive")
    if magic[:4] != b"PK\x03\x04":          # every .npz is a zip archive
        raise CheckpointError(f"{path} is truncated or corrupt: the file is empty" if not magic else
                              f"{path} is not an .npz (zip) archive: not an icsnn-np checkpoint, "
                              f"or truncated or corrupt")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):      # a bare .npy array, not an archive
            raise CheckpointError(f"{path} is a single array, not an icsnn-np checkpoint archive")
        with z:
            if "__meta__" not in z.files:
                raise CheckpointError(f"{path} is not an icsnn-np checkpoint (no __meta__ header; "
                                      f"a PyTorch state_dict? see docs/import.md)")
            header = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
            UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from e
    check_header(header, path)
    for k, a in arrays.items():
        if a.dtype.kind != "f":            # int8 or bool weights would be cast without a word
            raise CheckpointError(f"{path}: tensor {k} is {a.dtype}, not floating point: a "
                                  f"checkpoint holds float weights (quantised or boolean tensors "
                                  f"are not read)")
        if not np.all(np.isfinite(a)):
            raise CheckpointError(f"{path}: tensor {k} contains NaN or inf")
    return header, {k: a.astype(np.float32) for k, a in arrays.items()}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_header(header, path="checkpoint"):
    """The header's schema: a JSON object of this format and version, an ``arch`` name (one
    this package builds: checked by ``load_checkpoint``), a positive integer ``num_classes``;
    where present, ``mean``/``std`` as 1 or 3 numbers, ``p`` in (0, 1], ``activation`` relu
    or qcfs (qcfs with positive integer ``levels``). Raises CheckpointError naming the file
    and the field."""
    def bad(field, v, want):
        return CheckpointError(f"{path}: header field {field} is {v!r}: {want}")
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is a JSON {type(header).__name__}, not an object: "
                              f"not an icsnn-np checkpoint")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an icsnn-np checkpoint (format {header.get('format')!r})")
    version = header.get("version", 0)
    if not _is_int(version) or version < 0:
        raise bad("version", version, "expected a format version number")
    if version > VERSION:
        raise CheckpointError(f"{path} has format version {version}, newer than this "
                              f"package understands ({VERSION}); upgrade icsnn-np")
    if not isinstance(header.get("arch"), str) or not header["arch"]:
        raise bad("arch", header.get("arch"), "expected the name of an architecture")
    if not _is_int(header.get("num_classes")) or header["num_classes"] < 1:
        raise bad("num_classes", header.get("num_classes"), "expected a positive integer")
    for k in ("mean", "std"):
        if k in header:
            v = header[k]
            values = v if isinstance(v, list) else [v]
            if not all(_is_number(x) for x in values):
                raise bad(k, v, "expected 1 or 3 numbers (per channel, of x/255)")
            if len(values) not in (1, 3):
                raise CheckpointError(f"{path}: header: {k} holds {len(values)} values, but the "
                                      f"images have 3 channels: one value per channel (or one for all)")
    if "p" in header and not (_is_number(header["p"]) and 0 < header["p"] <= 1):
        raise CheckpointError(f"{path}: the checkpoint stores p = {header['p']!r}: the threshold "
                              f"quantile p must lie in (0, 1]")
    act = header.get("activation", "relu")
    if act not in ("relu", "qcfs"):
        raise bad("activation", act, "expected relu or qcfs")
    if act == "qcfs" and not (_is_int(header.get("levels")) and header["levels"] >= 1):
        raise bad("levels", header.get("levels"), "a QCFS checkpoint needs its quantisation "
                                                  "levels L, a positive integer")
    return header


def check_fits_data(header: dict, num_classes: int | None = None, dataset: str = "the dataset",
                    source: str = "checkpoint", channels: int = 3):
    """The checkpoint's normalisation (mean, std) after checking it suits the data: present,
    finite, std > 0, on the x/255 scale the data loader uses, one value per image channel
    (or one for all); and, given ``num_classes``, the model's class count matches the
    dataset's. Raises CheckpointError naming the file."""
    missing = [k for k in ("mean", "std") if k not in header]
    if missing:
        raise CheckpointError(f"{source} has no {' or '.join(missing)} in its header: the input "
                              f"normalisation the model was trained with is unknown (save it with "
                              f"save_checkpoint(..., meta={{'mean': ..., 'std': ...}}))")
    try:
        check_normalisation(header["mean"], header["std"], f"{source}: header")
    except (ValueError, TypeError) as e:
        raise CheckpointError(str(e)) from None
    if np.size(header["mean"]) not in (1, channels):
        raise CheckpointError(f"{source}: header: mean/std hold {np.size(header['mean'])} values, "
                              f"but the images have {channels} channels: one value per channel")
    if num_classes is not None and not _is_int(header.get("num_classes")):
        raise CheckpointError(f"{source}: header field num_classes is {header.get('num_classes')!r}: "
                              f"expected a positive integer")
    if num_classes is not None and header["num_classes"] != int(num_classes):
        raise CheckpointError(f"{source} holds a {header.get('num_classes')}-class model, but "
                              f"{dataset} has {num_classes} classes")
    return header["mean"], header["std"]


def load_checkpoint(path, arch: str | None = None, activations: dict | None = None):
    """Rebuild the model a checkpoint describes and load its weights.

    Returns (model, header). If ``arch`` is given and differs from the file's, or any tensor
    is missing, unexpected or mis-shaped, raises CheckpointError naming it. A model trained
    with another activation than ReLU (header ``activation``) is rebuilt by
    ``activations[name](model, header)`` (files know layers, not methods: the QCFS one is
    plugged in by ``icsnn_np.runs.checkpoints.load_model``).
    """
    header, arrays = read_checkpoint(path)
    if header["arch"] not in ALL_MODELS:           # read_checkpoint reads any arch's file
        raise CheckpointError(f"{path}: header field arch is {header['arch']!r}: expected one of "
                              f"{', '.join(sorted(ALL_MODELS))}")
    if arch is not None and header["arch"] != arch:
        raise CheckpointError(f"{path} holds a {header['arch']!r} model, not {arch!r}")
    try:
        model = build_any(header["arch"], num_classes=header["num_classes"])
        act = header.get("activation", "relu")
        if act != "relu":
            if act not in (activations or {}):
                raise CheckpointError(f"{path} holds an ANN trained with the {act} activation: "
                                      f"load it with icsnn_np.runs.checkpoints.load_model")
            model = activations[act](model, header)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    lams = [k for k in arrays if k.endswith(".lam")]
    if lams and header.get("activation", "relu") != "qcfs":     # not one unexpected tensor
        raise CheckpointError(f"{path}: a QCFS checkpoint (it holds λ: {lams[0]}, ...) under a "
                              f"ReLU header (no activation: qcfs / levels): its header lost its "
                              f"activation, so its L is unknown and it cannot be loaded")
    check_state_dict(model, arrays, source=str(path))
    model.load_state_dict(arrays)
    return model, header


def check_state_dict(model, arrays: dict, source: str = "state_dict"):
    """Raise CheckpointError naming the first missing, unexpected or mis-shaped tensor."""
    own = model.state_dict()
    for name, p in own.items():
        if name not in arrays:
            raise CheckpointError(f"{source}: missing tensor {name!r} (shape {tuple(p.shape)})")
        if tuple(arrays[name].shape) != tuple(p.shape):
            raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(arrays[name].shape)}, "
                                  f"model expects {tuple(p.shape)}")
        if name.endswith(".running_var") and np.any(arrays[name] < 0):
            raise CheckpointError(f"{source}: tensor {name!r} (a BatchNorm running variance) has "
                                  f"a negative value ({float(np.min(arrays[name])):g}); a variance is >= 0")
    for name in arrays:
        if name not in own:
            raise CheckpointError(f"{source}: unexpected tensor {name!r}")
