"""Dataset preparation (one module per source), the on-disk format and the batch loader."""
