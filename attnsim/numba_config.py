"""Numba options in one place (STUMPY's habit): kernels use JIT_OPTS, never literals."""
JIT_OPTS = dict(cache=True, fastmath=False)
