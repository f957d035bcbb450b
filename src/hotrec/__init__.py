"""hotrec: fast DLRM-family recommendation training and serving on CPU-GPU machines."""

__version__ = "0.1.0"
