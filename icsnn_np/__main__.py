"""``python -m icsnn_np``: the commands, one line each; ``--version`` prints the version."""
from __future__ import annotations

import sys

from ._version import __version__

COMMANDS = [
    ("demo", "convert a bundled network and compare SNN, I-SNN, C-SNN, IC-SNN (about a minute)"),
    ("train", "train a ReLU (or QCFS) ANN with hand-written SGD on CIFAR (minutes to hours)"),
    ("reproduce", "the paper's Tables 2-5 and Fig. 5 for a trained model (hours on 2,000 images)"),
    ("compare", "IC-SNN beside SNN Calibration, COS, SRP at equal total steps (about an hour)"),
    ("bench", "speed against PyTorch: SNN inference, training, GEMMs (minutes)"),
]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--version":
        print(f"icsnn-np {__version__}")
        return 0
    if argv and argv[0] in dict(COMMANDS):         # `icsnn demo ...`, `python -m icsnn_np demo ...`
        import runpy  # noqa: PLC0415
        sys.argv = [f"icsnn {argv[0]}", *argv[1:]]
        runpy.run_module(f"icsnn_np.{argv[0]}", run_name="__main__")
        return 0
    print(f"icsnn-np {__version__}: IC-SNN (Li et al., 2023) in NumPy/CuPy\n\n"
          "usage: python -m icsnn_np.COMMAND [options]   (or: icsnn COMMAND [options])\n")
    for name, what in COMMANDS:
        print(f"  {name:10s} {what}")
    print("\nEach command's --help shows every option with its default and examples.")
    return 0 if not argv or argv[0] in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
