"""``python -m icsnn_np.train``: the command line lives in ``icsnn_np/cli/train.py``."""
import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
