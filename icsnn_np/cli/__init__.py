"""The command lines (``python -m icsnn_np.demo``, ``train``, ``reproduce``, ``compare``):
argument parsing, one-line errors and exit codes (``common``) on top of ``runs``."""
