"""The fast engine: the same networks and the same results as the teaching path, sooner.

    runs.engine.simulator("fast")(snn, x, T)      # the core simulate's signature, sooner
    runs.engine.training_network(model, "fast")   # training steps through the fast layers

What it adds, module by module (each tested equal to the plain code it replaces,
tests/test_fast.py):

    engine.py    the SNN layer by layer over *chunks* of time steps, into reused buffers;
                 direct coding's first layer once, the linear readout once
    neurons.py   the IF update over a chunk, tiled to stay in cache, spread over threads
    layers.py    twins of Conv2d / ReLU / AvgPool2d / IFNode that share the original's
                 parameters (twin.py); ``accelerate(tree)`` swaps them into a module tree
                 and lets the layer after a ReLU apply its mask in its own backward
    conv.py      convolution by blocks of images, channels-last, or Winograd
    winograd.py  3x3 convolution by Winograd F(4x4, 3x3): 4x fewer multiplies
    nhwc.py      channels-last (N, H, W, C) buffers seen as (N, C, H, W)
    threads.py   NumPy releases the GIL: slices of a layer's work on Python threads, with
                 the BLAS held to one thread while the engine runs (and restored after)
    blas.py      the OpenBLAS NumPy loaded: its thread count and kernels
    cache.py     the CPU's data cache sizes (L1d, L2, L3), from Linux's sysfs

Importing this package changes nothing: threads start and the BLAS is held only while a
fast simulation or training step runs.
"""
