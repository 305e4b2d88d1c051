"""Testing aids (not used by the package's own computations).

    cupy_standin   a strict CPU stand-in for CuPy: device arrays that refuse implicit
                   conversion to NumPy and count transfers (``ICSNN_CUPY_STANDIN=1``)
"""
