"""``python -m icsnn_np.reproduce``: the command line lives in ``icsnn_np/cli/reproduce.py``."""
import sys

from .cli.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
