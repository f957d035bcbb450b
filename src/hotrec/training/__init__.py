"""The training loop, optimizers, metrics and checkpoints."""
