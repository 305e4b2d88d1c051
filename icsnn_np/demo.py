"""``python -m icsnn_np.demo``: the command line lives in ``icsnn_np/cli/demo.py``."""
import sys

from .cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
