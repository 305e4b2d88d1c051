"""Build the bundled CIFAR-10 slice, icsnn_np/assets/cifar10_slice.npz, from the official files.

    python scripts/build_slice.py --src ../shared/data --out icsnn_np/assets/cifar10_slice.npz --force

(the default ``--out`` is ``runs/cifar10_slice.npz``, not tracked; an existing file is
replaced only with ``--force``; the rebuild is byte-identical, so ``git status`` shows
whether the bundled slice changed).

Rule (deterministic, no randomness): walk the official binary batches in their official order
(data_batch_1.bin ... data_batch_5.bin, i.e. training indices 0..49,999) and keep the first 100
images of each class -> 1,000 training images; the same on test_batch.bin -> 1,000 test images.
Kept images stay in their original order. The file stores uint8 x_train/x_test (N, 3, 32, 32),
int64 y_train/y_test, the class names, the source indices (train_index, test_index) and a note
naming the source files with their SHA-1s, so anyone holding CIFAR-10 can check the slice.
"""
from __future__ import annotations

import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from icsnn_np.cli import common as cli  # noqa: E402
from icsnn_np.io.files import check_new_output  # noqa: E402
from icsnn_np.io.data import file_digest, load_dataset  # noqa: E402

PER_CLASS = 100
BIN_FOLDER = "cifar-10-batches-bin"
BIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)


def first_per_class(y: np.ndarray, per_class: int) -> np.ndarray:
    """Indices (ascending) of the first `per_class` occurrences of every label in `y`."""
    keep = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        keep[np.flatnonzero(y == label)[:per_class]] = True
    return np.flatnonzero(keep)


def bin_folder(src: Path) -> Path:
    """`src` itself when it is the cifar-10-batches-bin folder, else the one inside it."""
    folder = src if src.name == BIN_FOLDER else src / BIN_FOLDER
    if not folder.is_dir():
        raise ValueError(f"{folder} not found: --src must be {BIN_FOLDER}/ or a folder holding it")
    return folder


def build(src: Path, per_class: int = PER_CLASS) -> dict[str, np.ndarray]:
    """The slice's arrays, read (and hash-checked) through icsnn_np.io.data."""
    folder = bin_folder(src)
    ds = load_dataset("cifar10", folder)            # verifies the official SHA-1s
    tr, te = first_per_class(ds.y_train, per_class), first_per_class(ds.y_test, per_class)
    sums = ", ".join(f"{f} sha1={file_digest(folder / f, 'sha1')}" for f in BIN_FILES)
    note = (f"CIFAR-10 slice: first {per_class} images per class of the official training set "
            f"(data_batch_1..5.bin in order) and of test_batch.bin, original order kept; "
            f"train_index/test_index are positions in those sets. Sources: {sums}")
    return {"x_train": ds.x_train[tr], "y_train": ds.y_train[tr].astype(np.int64),
            "x_test": ds.x_test[te], "y_test": ds.y_test[te].astype(np.int64),
            "classes": np.array(ds.classes), "train_index": tr.astype(np.int64),
            "test_index": te.astype(np.int64), "note": np.array(note)}


def write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed, but with fixed zip timestamps so a rebuild is byte-identical."""
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        for name, a in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with z.open(info, "w") as member:
                np.lib.format.write_array(member, np.asarray(a), allow_pickle=False)


def save_atomic(arrays: dict[str, np.ndarray], out: Path) -> None:
    """Write the npz next to `out`, then rename it over `out` (never half-written)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".npz.part")
    try:
        with os.fdopen(fd, "wb") as f:
            write_npz(f, arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the asset is meant to be shared
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv=None) -> int:
    """The command line; returns the exit code (0, 2 for bad input, 130 for Ctrl-C)."""
    return cli.run(_main, argv, kept="nothing was written (the slice is written atomically at the end)")


def _main(argv) -> int:
    p = cli.ArgumentParser(prog="python scripts/build_slice.py", description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True, type=Path,
                   help=f"the {BIN_FOLDER} folder or the data folder holding it")
    p.add_argument("--out", type=Path, default=Path("runs/cifar10_slice.npz"),
                   help="default runs/cifar10_slice.npz (the bundled one: icsnn_np/assets/cifar10_slice.npz)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--per-class", type=cli.count("--per-class"), default=PER_CLASS)
    args = p.parse_args(argv)
    check_new_output(args.out, "--out", args.force)    # before any work: writable, not replacing
    with cli.claim(args.out, cli.log_stderr):
        arrays = build(args.src, args.per_class)
        save_atomic(arrays, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): "
          f"{len(arrays['x_train'])} train + {len(arrays['x_test'])} test images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
