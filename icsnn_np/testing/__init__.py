"""Testing aids (not used by the package's own computations).

    cupy_standin   a strict CPU stand-in for CuPy: device arrays that refuse implicit
                   conversion to NumPy and count transfers
    plug           puts the stand-in into the backend (``plug_standin``, ``standin()``)
    run            ``python -m icsnn_np.testing.run icsnn_np.demo --backend cupy ...``
    reference      slow, obvious references the fast kernels are tested against
"""
