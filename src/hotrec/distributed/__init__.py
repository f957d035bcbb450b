"""Training on several processes (torch.distributed, launched by torchrun): the process group,
the row-sharded embedding store, and the launcher behind `hotrec train --nproc N`."""
