"""Set-up shared by the placement schedules: the hot set, the device replica, the routing."""

from __future__ import annotations

import torch

from hotrec.placement.hot_cold import DeviceReplica, RoutedEmbedding
from hotrec.placement.hotset import HotSet
from hotrec.placement.popularity import PopularityProfiler, parse_bytes
from hotrec.progress import console


def obtain_hotset(trainer) -> HotSet:
    """The configured hot set file, or a profile of the training split under the budget."""
    p, schema = trainer.cfg.placement, trainer.dataset.schema
    dim = trainer.cfg.model.embedding_dim
    if p.hotset:
        hotset = HotSet.load(p.hotset)
        hotset.check_compatible(schema.table_rows, dim)
        return hotset
    names = [t.name for t in schema.tables]
    profiler = PopularityProfiler(p.sample_fraction, trainer.cfg.train.seed)
    profiler.fit(trainer.dataset.split("train").sparse, schema.table_rows, names)
    hotset = HotSet.from_profile(profiler, parse_bytes(p.hot_budget), dim)
    s = hotset.stats
    console.print(
        f"hot set: {s['hot_rows']:,} rows under {p.hot_budget}, profiled on "
        f"{s['sampled_inputs']:,} inputs ({p.sample_fraction:.0%} sample); in that sample "
        f"{s['lookup_share']:.1%} of lookups and {s['input_share']:.1%} of inputs are hot"
    )
    return hotset


def install_routing(trainer, hotset: HotSet) -> RoutedEmbedding:
    """Replace the model's table embedding by one that routes lookups to a hot-row replica.

    The store module is kept, so checkpoints have the same keys under every schedule."""
    old = trainer.model.embeddings
    replica = DeviceReplica(old.store, hotset.rows, trainer.device)
    replica.pull()
    slot_map = torch.from_numpy(hotset.slot_map())
    routed = RoutedEmbedding(old.store, old.offsets, replica, slot_map, trainer.device)
    trainer.model.embeddings = routed
    return routed
