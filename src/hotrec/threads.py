"""Keep helper threads from starting thread teams of their own.

torch's CPU kernels parallelize over an OpenMP team sized per calling thread. A helper
thread (the loader's prefetch, hotline's look-ahead worker) that runs torch ops would start
a second team beside the training step's and oversubscribe the cores: on 2 cores hotline's
step ran 1.5x slower for it. `one_openmp_thread()` sets the calling thread's OpenMP team to
one thread, through the OpenMP runtime torch itself loaded; it changes nothing for other
threads (the setting is per thread) and nothing in the results (the same kernels run).
torch.set_num_threads would not do: it also resizes MKL's pool for every thread.
"""

from __future__ import annotations

import ctypes
import functools
import glob
from pathlib import Path


@functools.cache
def _runtime():
    """torch's bundled OpenMP runtime (libgomp / libiomp / libomp), or None."""
    import torch

    lib = Path(torch.__file__).parent / "lib"
    for pattern in ("libgomp*", "libiomp*", "libomp*"):
        for path in sorted(glob.glob(str(lib / pattern))):
            try:
                runtime = ctypes.CDLL(path)
                runtime.omp_set_num_threads  # noqa: B018 (the symbol must exist)
                return runtime
            except (OSError, AttributeError):
                continue
    return None


def one_openmp_thread() -> bool:
    """The calling thread's torch kernels run on one thread; False where no runtime is found."""
    runtime = _runtime()
    if runtime is None:
        return False
    runtime.omp_set_num_threads(1)
    return True
