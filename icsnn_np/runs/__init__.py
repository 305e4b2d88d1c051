"""Running experiments on the core: which engine (``engine``), whether it fits in memory
(``resources``), progress with an ETA (``progress``) and Ctrl-C (``interrupt``), the
paper's tables (``evaluate``, ``tables``, ``protocol``, ``partial``), spike and energy
counts (``stats``), and the training loop (``training``)."""
