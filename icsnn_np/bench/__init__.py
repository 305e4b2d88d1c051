"""Benchmarks: ``python -m icsnn_np.bench`` (``--quick`` for a smoke run, ``--backend cupy``).

Measures in one run, on the same network, weights and inputs:

1. SNN inference throughput (image*time-steps/s) on ``vgg_bench``, batch 64, T = 32, direct
   coding: the fast engine, the fast engine with im2col convolutions, the step-by-step
   teaching simulation, and the same IF simulation written step by step in PyTorch eager
   (when torch is installed), with the agreement of their predictions;
2. the effective GFLOP/s of the fast engine's convolutions (useful FLOPs only) against a
   plain large float32 matrix product (the BLAS limit);
3. training throughput (images/s) of ``vgg_cpu`` (forward, cross-entropy, backward, SGD
   step; batch 128): the fast engine, the teaching layers, and PyTorch;
4. time and peak memory of the fast engine for T = 32, 128, 512.

``--agreement-seeds N`` repeats the prediction check against PyTorch over N weight seeds.

    parts.py    the measurements          measure.py   timing, load, memory, machine
    twins.py    the PyTorch twins         report.py    targets and tables
    __main__.py the command line

Timing: ours and PyTorch alternate. For SNN inference, one warm-up call each of the fast
engine, the fast engine with im2col convs and PyTorch, then ``--repeats`` rounds of one call
each in that order (training: ours, PyTorch); each row reports the median and the range
(min-max) of its calls, and ratios are ratios of medians. The slow teaching path (the
"reference" rows), the convolutions against the matmul and the T sweep are timed in a row
after one warm-up (GEMM rates from medians; the T sweep from the fastest call). PyTorch gets
as many threads as the BLAS under NumPy. The machine record holds the CPU, its cores and
data caches, the BLAS's kernels and threads, the fast engine's threads and the load average
before and after.
"""
