"""CIFAR-10/100 in the official formats, and the bundled slice.

    ds = load_dataset("cifar10")            # looks in default_data_dir() ($ICSNN_DATA)
    ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.classes
    load_dataset("cifar10", folder, test_only=True)   # the test batch alone (x_train empty)

Images are uint8 (N, 3, 32, 32), NCHW, RGB; labels int64. All four official distributions are
read (CIFAR-10 binary / python, CIFAR-100 python / binary), either as the extracted folder or
straight from the ``.tar.gz`` (nothing is extracted to disk). Official files are recognised by
name and size (more than half the official one) and must then match their published hash, so
a corrupt or truncated download fails loudly instead of training on garbage; other files
(small test fixtures) get structural checks only.
Every data problem raises :class:`DatasetError` naming the file and saying what to do.
(Normalisation, augmentation and batching are in preprocess.py.)
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

DATA_ENV = "ICSNN_DATA"
DATASETS = ("cifar10", "cifar100", "cifar10-slice")
BASE_URL = "https://www.cs.toronto.edu/~kriz/"
SLICE_PATH = Path(__file__).resolve().parent.parent / "assets" / "cifar10_slice.npz"
_PIXELS = 3 * 32 * 32  # bytes per image: R, G, B planes of 32x32, row-major
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")   # batches.meta order; a test-only folder without it gets these
_DOWNLOAD_TIMEOUT_S = 10


class DatasetError(RuntimeError):
    """A data file is missing, truncated or corrupt; the message names it and the fix."""


@dataclass
class Dataset:
    """Train/test images and labels of one dataset, kept as uint8 to save memory."""

    name: str
    x_train: np.ndarray  # uint8 (N, 3, 32, 32), NCHW, RGB
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray   # uint8 (M, 3, 32, 32)
    y_test: np.ndarray   # int64 (M,)
    classes: list[str]
    source: str = ""     # the folder, archive or asset it was read from

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- official formats
@dataclass(frozen=True)
class _Format:
    """Where one official distribution keeps its files and how they are encoded."""

    folder: str               # the folder the archive extracts to
    archive: str              # official archive name (at BASE_URL)
    train: tuple[str, ...]    # training files, in official order
    test: str
    meta: str                 # file holding the class names
    num_classes: int
    label_bytes: int = 0      # binary: label bytes per record (CIFAR-100: coarse, fine)
    label_key: bytes = b""    # pickle: key of the label list
    names_key: bytes = b""    # pickle: key of the class names in `meta`

    @property
    def binary(self) -> bool:
        return self.label_bytes > 0


_C10_BIN = _Format("cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                   tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin",
                   "batches.meta.txt", 10, label_bytes=1)
_C10_PY = _Format("cifar-10-batches-py", "cifar-10-python.tar.gz",
                  tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                  "batches.meta", 10, label_key=b"labels", names_key=b"label_names")
_C100_PY = _Format("cifar-100-python", "cifar-100-python.tar.gz", ("train",), "test", "meta",
                   100, label_key=b"fine_labels", names_key=b"fine_label_names")
_C100_BIN = _Format("cifar-100-binary", "cifar-100-binary.tar.gz", ("train.bin",), "test.bin",
                    "fine_label_names.txt", 100, label_bytes=2)
# Search order per dataset; the first is the one download=True fetches.
_FORMATS = {"cifar10": (_C10_PY, _C10_BIN), "cifar100": (_C100_PY, _C100_BIN)}


class _Pin(NamedTuple):
    """A published hash, and the official byte size (0: unknown, then at least `min_size`)."""

    algo: str
    digest: str
    size: int = 0
    min_size: int = 0


# Archives: MD5s from the CIFAR page (as pinned by torchvision). CIFAR-10 binary batches:
# SHA-1s of the bit-exact copy in shared/data (its SHA1SUMS). Python batches: torchvision's
# per-file MD5s; sizes from published listings of the official folder.
_PINS = {
    "cifar-10-python.tar.gz": _Pin("md5", "c58f30108f718f92721af3b95e74349a", 170498071),
    "cifar-10-binary.tar.gz": _Pin("md5", "c32a1d4ab5d03f1284b67883e8d87530", 170052171),
    "cifar-100-python.tar.gz": _Pin("md5", "eb9058c3a382ffc7106e4002c42a8d85", 169001437),
    "cifar-100-binary.tar.gz": _Pin("md5", "03b5dce01913d631647c71ecec9e9cb8", 168513733),
    **{f"cifar-10-batches-bin/{f}": _Pin("sha1", h, 30730000) for f, h in [
        ("data_batch_1.bin", "aadd24acce27caa71bf4b10992e9e7b2d74c2540"),
        ("data_batch_2.bin", "c0ba65cce70568cd57b4e03e9ac8d2a5367c1795"),
        ("data_batch_3.bin", "1dd00a74ab1d17a6e7d73e185b69dbf31242f295"),
        ("data_batch_4.bin", "aab85764eb3584312d3c7f65fd2fd016e36a258e"),
        ("data_batch_5.bin", "26e2849e66a845b7f1e4614ae70f4889ae604628"),
        ("test_batch.bin", "67eb016db431130d61cd03c7ad570b013799c88c")]},
    **{f"cifar-10-batches-py/{f}": _Pin("md5", h, s) for f, h, s in [
        ("data_batch_1", "c99cafc152244af753f735de768cd75f", 31035704),
        ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec", 31035320),
        ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751", 31035999),
        ("data_batch_4", "634d18415352ddfa80567beed471001a", 31035696),
        ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb", 31035623),
        ("test_batch", "40351d587109b95175f43aff81a1287e", 31035526),
        ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888", 158)]},
    # Byte sizes unconfirmed: any file holding the full split's pixels must match.
    "cifar-100-python/train": _Pin("md5", "16019d7e3df5f24257cddd939b257f8d", 0, 50000 * _PIXELS),
    "cifar-100-python/test": _Pin("md5", "f0ef6b0ae62326f3e7ffdfab6717acfc", 0, 10000 * _PIXELS),
}

_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime_ns, algo) -> hex digest, once per process


def file_digest(path, algo: str = "sha1") -> str:
    """Hex digest of a file, read in 1 MiB chunks; cached by path, size and mtime."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, algo)
    if key not in _DIGESTS:
        h = hashlib.new(algo)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _claims_official(pin: _Pin, size: int, key: str) -> bool:
    """Whether ``size`` bytes claim to be the pinned file ``key``: its size, or over half of a
    batch (> 1 MB, not an archive: a repacked one may differ), so a truncated batch fails its
    hash; small test fixtures do not claim."""
    big = pin.size > 1 << 20 and size > pin.size // 2 and not key.endswith(".tar.gz")
    return (size == pin.size or big) if pin.size else size >= pin.min_size


def _mismatch(where, pin: _Pin, got: str, fix: str) -> DatasetError:
    return DatasetError(f"{where}: {pin.algo.upper()} {got} differs from the official "
                        f"{pin.digest}; the file is corrupt, truncated or altered. {fix}")


def check_official(path, key: str) -> None:
    """Raise DatasetError if `path` claims to be the official file `key` but its hash differs."""
    pin = _PINS.get(key)
    if pin is None or not _claims_official(pin, os.path.getsize(path), key):
        return
    got = file_digest(path, pin.algo)
    if got != pin.digest:
        raise _mismatch(path, pin, got, f"Delete it and download it again from {BASE_URL}")


def check_official_bytes(data: bytes, key: str, where: str) -> None:
    """``check_official`` for a file's bytes (an archive member, read without extracting)."""
    pin = _PINS.get(key)
    if pin is None or not _claims_official(pin, len(data), key):
        return
    got = hashlib.new(pin.algo, data).hexdigest()
    if got != pin.digest:
        raise _mismatch(where, pin, got, f"Download the official archive again from {BASE_URL}")


# --------------------------------------------------------------------------- public API
def default_data_dir() -> Path:
    """$ICSNN_DATA if set, else $XDG_CACHE_HOME/icsnn_np, else ~/.cache/icsnn_np."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "icsnn_np"


def load_dataset(name: str, data_dir=None, download: bool = False,
                 verify: bool = True, test_only: bool = False) -> Dataset:
    """Load "cifar10", "cifar100" or the bundled "cifar10-slice" (no data_dir needed).

    Extracted folders are preferred over archives. `data_dir` may also be the extracted folder
    itself, or any folder holding the test file (e.g. only ``test_batch.bin``). `verify=False`
    skips the hash checks (structure is always checked). `test_only=True` reads the test file
    alone (x_train/y_train empty); class names come from the meta file, else the official ones.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if name == "cifar10-slice":
        return _load_slice()
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    found = _find(name, root)
    if found is None and not download:
        raise DatasetError(_missing_message(name, root))
    found = found or (_download(_FORMATS[name][0], root), _FORMATS[name][0])
    path, fmt = found
    wanted = (fmt.test, fmt.meta) if test_only else (*fmt.train, fmt.test, fmt.meta)
    optional = (fmt.meta,) if test_only and fmt.num_classes == 10 else ()
    files = (_read_archive(path, fmt, verify, wanted) if path.is_file()
             else _read_folder(path, fmt, verify, wanted, optional))
    # pop: each file's bytes are freed once parsed (the real training set is 150 MB)
    parts = [_parse(files.pop(f), fmt, f"{path}/{f}") for f in wanted[:-2]]
    x_test, y_test = _parse(files.pop(fmt.test), fmt, f"{path}/{fmt.test}")
    classes = (_class_names(files.pop(fmt.meta), fmt, f"{path}/{fmt.meta}") if fmt.meta in files
               else list(CIFAR10_CLASSES))
    x_train = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 3, 32, 32), np.uint8)
    y_train = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    return Dataset(name, x_train, y_train, x_test, y_test, classes, str(path))


# --------------------------------------------------------------------------- finding files
def _find(name: str, root: Path) -> tuple[Path, _Format] | None:
    """The first extracted folder, then the first archive, of `name` under `root`."""
    fmts = _FORMATS[name]
    folders = [(root, f) for f in fmts if root.name == f.folder]  # data_dir is the folder
    folders += [(root / f.folder, f) for f in fmts]
    folders += [(root, f) for f in fmts if (root / f.test).is_file()]  # any folder with the test file
    found = [(p, f) for p, f in folders if p.is_dir()]
    found += [(root / f.archive, f) for f in fmts if (root / f.archive).is_file()]
    return found[0] if found else None


def _place_hint(fmt: _Format, root: Path) -> str:
    return (f"place {fmt.archive} (or the extracted folder {fmt.folder}/) in {root}, "
            f"or set ${DATA_ENV} to the folder that holds it")


def _missing_message(name: str, root: Path) -> str:
    fmt = _FORMATS[name][0]
    others = ", ".join(f"{f.folder}/ or {f.archive}" for f in _FORMATS[name][1:])
    return (f"{name} not found in {root}: {_place_hint(fmt, root)} ({others} also work). "
            f"download=True (--download) fetches {fmt.archive} from {BASE_URL}.")


def _read_folder(folder: Path, fmt: _Format, verify: bool, wanted, optional=()) -> dict[str, bytes]:
    """Read the `wanted` files of an extracted folder (those in `optional` where present),
    hash-checking official ones."""
    out = {}
    for f in wanted:
        path = folder / f
        if not path.is_file():
            if f in optional:
                continue
            hint = (f"; to use the test file alone, load it test_only (the demo: --calib-from "
                    f"cifar10-slice)" if f in fmt.train and (folder / fmt.test).is_file() else "")
            raise DatasetError(f"{path} is missing: re-extract {fmt.archive} into "
                               f"{folder.parent} or download it again from {BASE_URL}{hint}")
        if verify:
            check_official(path, f"{fmt.folder}/{f}")
        out[f] = path.read_bytes()
    return out


def _read_archive(archive: Path, fmt: _Format, verify: bool, wanted) -> dict[str, bytes]:
    """Stream the `wanted` members out of a .tar.gz (one pass, nothing written to disk). An
    archive that is not byte for byte the official one (repacked) still has its members
    checked against their own pinned hashes."""
    if verify:
        check_official(archive, fmt.archive)
    wanted, out = {f"{fmt.folder}/{f}" for f in wanted}, {}
    try:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                name = "/".join(member.name.split("/")[-2:])  # tolerate a leading "./"
                if member.isfile() and name in wanted:
                    out[name.split("/")[1]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DatasetError(f"{archive} is truncated or corrupt ({e}): delete it and download "
                           f"it again from {BASE_URL}") from e
    missing = sorted(w for w in wanted if w.split("/")[1] not in out)
    if missing:
        raise DatasetError(f"{archive} lacks {', '.join(missing)}: it is not the official "
                           f"{fmt.archive}; download it again from {BASE_URL}")
    if verify:
        for f, data in out.items():
            check_official_bytes(data, f"{fmt.folder}/{f}", f"{archive}: member {fmt.folder}/{f}")
    return out


# --------------------------------------------------------------------------- parsing
def _parse(data: bytes, fmt: _Format, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, 3, 32, 32) and labels int64 (N,) from one batch file's bytes."""
    x, y = _parse_binary(data, fmt, where) if fmt.binary else _parse_pickle(data, fmt, where)
    if len(y) and (y.min() < 0 or y.max() >= fmt.num_classes):
        raise DatasetError(f"{where}: labels outside 0..{fmt.num_classes - 1}; the file is "
                           f"corrupt, download it again from {BASE_URL}")
    return x, y


def _parse_binary(data: bytes, fmt: _Format, where: str):
    """Records of label byte(s) + 3072 pixel bytes; the fine label is the last label byte."""
    rec = fmt.label_bytes + _PIXELS
    if len(data) == 0 or len(data) % rec:
        raise DatasetError(f"{where}: {len(data)} bytes is not a whole number of {rec}-byte "
                           f"records (truncated?); download it again from {BASE_URL}")
    records = np.frombuffer(data, np.uint8).reshape(-1, rec)           # (N, rec)
    x = records[:, fmt.label_bytes:].reshape(-1, 3, 32, 32).copy()     # planes R, G, B
    return x, records[:, fmt.label_bytes - 1].astype(np.int64)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickle only plain containers and NumPy arrays: a pickle from the internet must not be
    able to run arbitrary code on load."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")} | {
        (f"numpy.{core}.{mod}", fn) for core in ("core", "_core")
        for mod, fn in [("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                        ("numeric", "_frombuffer")]}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    """A dict from an official pickle (Python 2 era: byte-string keys, encoding="bytes")."""
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # truncation/corruption surfaces as many exception types
        raise DatasetError(f"{where} is truncated or corrupt ({type(e).__name__}: {e}); "
                           f"download it again from {BASE_URL}") from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}  # re-pickled?


def _parse_pickle(data: bytes, fmt: _Format, where: str):
    d = _unpickle(data, where)
    if b"data" not in d or fmt.label_key not in d:
        raise DatasetError(f"{where}: missing key b'data' or {fmt.label_key!r}; not an official "
                           f"{fmt.folder} file, download it again from {BASE_URL}")
    x, y = np.asarray(d[b"data"]), np.asarray(d[fmt.label_key])
    if (x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != _PIXELS or y.ndim != 1
            or y.dtype.kind not in "iu" or len(x) != len(y)):
        raise DatasetError(f"{where}: data {x.dtype}{x.shape}, labels {y.dtype}{y.shape}; "
                           f"expected uint8 (N, {_PIXELS}) and N integer labels. Download it "
                           f"again from {BASE_URL}")
    return x.reshape(-1, 3, 32, 32), y.astype(np.int64)                # (N, 3, 32, 32)


def _class_names(data: bytes, fmt: _Format, where: str) -> list[str]:
    if fmt.binary:  # one name per line
        names = [s.strip() for s in data.decode("utf-8", "replace").splitlines() if s.strip()]
    else:
        d = _unpickle(data, where)
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in d.get(fmt.names_key, [])]
    if len(names) != fmt.num_classes:
        raise DatasetError(f"{where}: found {len(names)} class names, expected "
                           f"{fmt.num_classes}; download it again from {BASE_URL}")
    return names


# --------------------------------------------------------------------------- slice, download
def _load_slice() -> Dataset:    # the bundled 1,000 + 1,000 images (scripts/build_slice.py)
    if not SLICE_PATH.is_file():
        raise DatasetError(f"{SLICE_PATH} is missing: rebuild it with `python scripts/"
                           f"build_slice.py --src <folder holding cifar-10-batches-bin>`")
    with np.load(SLICE_PATH, allow_pickle=False) as z:
        return Dataset("cifar10-slice", z["x_train"], z["y_train"].astype(np.int64),
                       z["x_test"], z["y_test"].astype(np.int64),
                       [str(c) for c in z["classes"]], str(SLICE_PATH))


def _download(fmt: _Format, root: Path) -> Path:
    """Fetch the official archive into `root` atomically (temp file + os.replace), MD5-checked."""
    url, dest, tmp = BASE_URL + fmt.archive, root / fmt.archive, None
    try:
        root.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as r, \
                tempfile.NamedTemporaryFile(dir=root, suffix=".part", delete=False) as f:
            tmp = Path(f.name)
            while chunk := r.read(1 << 20):
                f.write(chunk)
    except Exception as e:  # URLError, timeouts, HTTP errors, disk errors: all end the same way
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise DatasetError(f"download of {url} failed ({e}): {_place_hint(fmt, root)}") from e
    pin = _PINS[fmt.archive]
    if file_digest(tmp, pin.algo) != pin.digest:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"download of {url} is corrupt (MD5 mismatch): try again, or "
                           f"{_place_hint(fmt, root)}")
    os.replace(tmp, dest)
    return dest
