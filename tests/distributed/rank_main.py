"""A rank's entry point for the distributed tests' negative controls: `hotrec` with DDP's
default gradient hook (the mean over ranks) in place of hotrec's sum, when
HOTREC_TEST_MEAN_GRADIENTS is set; with hot-row replicas that do not share their updates,
when HOTREC_TEST_LOCAL_HOT is set. Started by torchrun; never imported by hotrec."""

import os
import sys

if os.environ.get("HOTREC_TEST_MEAN_GRADIENTS"):
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    import hotrec.distributed.training as training

    training._sum_gradients = lambda _traffic, bucket: allreduce_hook(None, bucket)

if os.environ.get("HOTREC_TEST_LOCAL_HOT"):  # each replica applies only its own rank's updates
    import hotrec.training.schedules.placed as placed

    placed.share_hot_updates = lambda _d, _store, _rows, _device: (
        lambda slots, grads: (slots, grads)
    )

from hotrec.cli.main import main

sys.exit(main(sys.argv[1:]))
