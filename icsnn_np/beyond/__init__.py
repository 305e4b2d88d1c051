"""Beyond the paper: the training-free family IC-SNN belongs to, on the same core.

    calibration.py  SNN Calibration (Li et al., ICML 2021)
    prerun.py       COS and SRP (Hao et al., ICLR and AAAI 2023): a per-image pre-run
    thresholds.py   SNN Calibration's MSE threshold search
    quantised.py    the T-level ANN, a reference level for every method
    methods.py      all of them by name, beside the paper's variants (``TABLE``)
"""
