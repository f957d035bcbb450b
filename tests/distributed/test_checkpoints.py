"""Sharded checkpoints, in one process (a world of one rank writes and reads them the way
each rank of several does): the file names a complete set of shards, a save that stopped
before its file keeps the previous checkpoint, older shards are removed, altered shards are
refused in one line, and a crafted metadata file runs no code (the stock DCP reader would:
the negative control)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from hotrec.distributed.checkpoints import remove_older_shards, save_shards, shard_root
from hotrec.distributed.group import SINGLE, Dist
from hotrec.distributed.sharded import ShardedStore, stores, without_stores
from hotrec.embeddings.store import EmbeddingStore
from hotrec.errors import HotrecError
from hotrec.training.checkpoint import load_checkpoint, save_checkpoint


class Holder(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        full = EmbeddingStore([5, 3], 4, "adagrad", generator=torch.Generator().manual_seed(seed))
        full.opt_state.uniform_(0, 1, generator=torch.Generator().manual_seed(seed + 1))
        self.store = ShardedStore(full, Dist(rank=0, world=1))
        self.head = nn.Linear(4, 1)


def save(run: Path, model: nn.Module) -> dict:
    """What the trainer does on each rank, then on the first."""
    path = run / "checkpoint.pt"
    state = {"model": without_stores(model, model.state_dict()), "state": {"step": 1}}
    state["shards"] = save_shards(path, model, SINGLE)
    save_checkpoint(path, state)
    remove_older_shards(path, state["shards"])
    return state["shards"]


def test_a_checkpoint_holds_its_stores_as_shards_and_reads_back_whole(tmp_path):
    m = Holder(0)
    manifest = save(tmp_path, m)
    raw = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert "store.weight" not in raw["model"] and raw["shards"]["world"] == 1
    assert (tmp_path / manifest["dir"] / "__0_0.distcp").is_file()
    back = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    for k, v in m.state_dict().items():
        assert torch.equal(back[k], v), k


def test_a_save_stopped_before_its_file_keeps_the_previous_checkpoint(tmp_path):
    old = Holder(0)
    first = save(tmp_path, old)
    save_shards(tmp_path / "checkpoint.pt", Holder(1), SINGLE)  # stopped here: no new file
    back = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    assert torch.equal(back["store.weight"], old.store.weight)
    second = save(tmp_path, Holder(2))  # the next complete save replaces both directories
    assert first["dir"] != second["dir"]
    assert [p.name for p in shard_root(tmp_path / "checkpoint.pt").iterdir()] == [
        Path(second["dir"]).name
    ]


def test_an_altered_or_missing_shard_is_refused_in_one_line(tmp_path):
    manifest = save(tmp_path, Holder(0))
    shard = tmp_path / manifest["dir"] / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    at = data.find(Holder(0).store.weight.numpy().tobytes()[:8])  # the first row's bytes
    assert at > 0
    data[at] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(HotrecError, match="does not match its checksum"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    shard.unlink()
    with pytest.raises(HotrecError, match="cannot be read") as e:
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert "\n" not in str(e.value)


class Payload:
    """Unpickling it runs a command (what a crafted metadata file could hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_metadata_runs_no_code(tmp_path):
    from torch.distributed.checkpoint import FileSystemReader

    manifest = save(tmp_path, Holder(0))
    directory = tmp_path / manifest["dir"]
    marker = tmp_path / "ran"
    (directory / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(HotrecError, match="is not checkpoint metadata"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017  the negative control: DCP's own reader
        FileSystemReader(directory).read_metadata()
    assert marker.exists()  # ... ran the command


def test_several_ranks_parts_interleave_into_the_whole_store():
    """Row r of W ranks lives at local row r // W of rank r mod W: read_shards' interleave."""
    full = EmbeddingStore([7], 2, "sgd", generator=torch.Generator().manual_seed(0))
    parts = [full.weight[r::3] for r in range(3)]
    whole = torch.empty_like(full.weight)
    for r, p in enumerate(parts):
        whole[r::3] = p
    assert torch.equal(whole, full.weight)
    assert list(stores(Holder(0))) == ["store"]
