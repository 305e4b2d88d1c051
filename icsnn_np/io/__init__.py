"""Data in and out: CIFAR datasets and the bundled slice (``data``), normalisation and
augmentation (``preprocess``), checkpoints (``checkpoint``), PyTorch state_dicts
(``imports``, with ``batchnorm`` folding), and files written atomically (``files``)."""
