"""Load any checkpoint the package makes, QCFS-trained ANNs included.

``io.checkpoint`` reads files and knows layers, not methods; a QCFS-trained ANN (Bu et al.,
ICLR 2022; ``beyond/qcfs.py``) is rebuilt here, with its levels L from the header.

    model, header = load_model("vgg_cpu_qcfs")      # a bundled model's name or a file
"""
from __future__ import annotations

from ..beyond.qcfs import with_qcfs
from ..io.checkpoint import load_checkpoint, resolve_checkpoint


def qcfs_model(model, header):
    """The ReLU ``model`` rebuilt with QCFS activations of the header's L levels."""
    return with_qcfs(model, header["levels"])


ACTIVATIONS = {"qcfs": qcfs_model}


def load_model(name_or_path, arch: str | None = None):
    """(model, header) of a checkpoint file or a bundled model's name (``io.checkpoint``),
    any activation the package trains."""
    return load_checkpoint(resolve_checkpoint(name_or_path), arch, ACTIVATIONS)
