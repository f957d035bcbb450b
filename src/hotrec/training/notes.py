"""Start-up notes: one line each where a run's settings do not do what they say on this run,
or are known to be slow on its hardware. `hotrec train` prints them before the first step and
result.json keeps them (`notes`), so a run started from the library records the same."""

from __future__ import annotations

from hotrec.config import PlacementConfig


def setting_notes(
    placement: PlacementConfig,
    *,
    ranks: int,
    compacting: bool,
    pad_multiple: int,
    precision: str,
    on_host: bool,
) -> list[str]:
    """`ranks`: processes training; `compacting`: the schedule re-packs kept inputs into full
    batches (Schedule.compact); `pad_multiple`: what forwards are padded to (0: as they come);
    `on_host`: the networks run in host memory (the CPU)."""
    p = placement
    skip = p.slipstream and p.slipstream_mode == "skip"
    notes = []
    if skip and p.slipstream_compact and ranks > 1:
        notes.append(
            "note: Slipstream's compaction runs on one process; on several ranks each batch "
            "trains what is left of it after skipping"
        )
    narrowed = skip and not compacting  # batches lose their skipped inputs: sizes vary
    if narrowed and pad_multiple == 0 and precision == "bf16" and on_host:
        notes.append(
            "note: under bf16 on the CPU each new batch size builds new kernels, and Slipstream's "
            "skipped inputs leave batches of changing size (an epoch ran 1.2-1.8x slower than "
            "without Slipstream in the README's benchmark); padding forwards to multiples of 64 "
            "(train.pad_multiple=-1, the default, where the model has no dropout) or "
            "--slipstream-compact avoids it"
        )
    return notes
