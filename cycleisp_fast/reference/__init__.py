"""Plain-PyTorch references of every fused op, written to mirror the papers' code: the truth the native
and Triton backends are tested against, and the CPU fallback."""
