"""Triton kernels of cycleisp_fast, installed as ``cycleisp_fast.triton_kernels``.

The folder sits at the repository root (one room per op, as csrc/ does) but is installed inside the
package: a top-level ``triton_kernels`` would clash with the package of that name that Triton publishes.
Importing this package imports triton; set ``TRITON_INTERPRET=1`` before that to run kernels on the CPU.
"""
