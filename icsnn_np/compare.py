"""``python -m icsnn_np.compare``: the command line lives in ``icsnn_np/cli/compare.py``."""
import sys

from .cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
