"""Sharded checkpoints with torch.distributed.checkpoint (DCP): every rank writes its own rows
of every sharded store into a fresh directory beside the checkpoint file, in parallel; then
rank 0 writes the checkpoint file (atomically, as always) with everything else and a
manifest: the directory, the world size, each store's shape and a digest of each rank's part.
The file is written last, so it never names a partial set of shards: a run stopped while
shards are written keeps its previous checkpoint, and older directories are removed only
after the new file is in place.

A resume with the same world size reads only each rank's own part; with another world size,
or in one process (`hotrec eval`, artifact export), the parts are read and put back into
the whole store where the saving run's layout (recorded in the manifest) says.

Reading is restricted: DCP's stock reader unpickles its metadata file and loads non-tensor
entries with the unrestricted torch unpickler, so a crafted directory could run code.
`SafeReader` unpickles only DCP's metadata classes and refuses any entry that is not a
tensor; tensors are read by DCP with `weights_only=True`, then checked against the digests.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import LoadItemType

from hotrec.distributed.group import Dist
from hotrec.distributed.layout import make_layout
from hotrec.distributed.sharded import stores
from hotrec.errors import HotrecError
from hotrec.integrity import structure_digest

_METADATA = "torch.distributed.checkpoint.metadata"
ALLOWED = {
    *(
        (_METADATA, name)
        for name in (
            "Metadata",
            "TensorStorageMetadata",
            "BytesStorageMetadata",
            "ChunkStorageMetadata",
            "TensorProperties",
            "MetadataIndex",
            "StorageMeta",
            "_MEM_FORMAT_ENCODING",
        )
    ),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of checkpoint metadata")


class SafeReader(FileSystemReader):
    """DCP's file reader that never runs code from the files it reads."""

    def read_metadata(self, *args, **kwargs) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        try:
            with self.fs.create_stream(path, "rb") as f:
                metadata = _MetadataUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as e:
            raise HotrecError(f"{path} is not checkpoint metadata: {e}") from None
        if not isinstance(metadata, Metadata):
            raise HotrecError(f"{path} is not checkpoint metadata")
        if metadata.storage_meta is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def read_data(self, plan, planner):
        if any(item.type == LoadItemType.BYTE_IO for item in plan.items):
            raise HotrecError(f"{self.path} holds an entry that is not a tensor: not loaded")
        return super().read_data(plan, planner)


def _cause(e: BaseException) -> BaseException:
    """What went wrong inside a DCP call (it wraps each rank's exception)."""
    if isinstance(e, CheckpointException) and e.failures:
        return next(iter(e.failures.values()))[0]
    return e


def shard_root(path: Path) -> Path:
    """The directory that holds the shard directories of checkpoint file `path`."""
    return path.with_name(path.name + ".shards")


def _key(name: str, tensor: str, rank: int) -> str:
    return f"{name}.{tensor}@{rank}"


def _local(store) -> dict[str, torch.Tensor]:
    """The tensors a rank holds of one store, by their tensor name."""
    out = {"weight": store.weight}
    if store.optimizer == "adagrad":
        out["opt_state"] = store.opt_state
    return out


def save_shards(path: Path, model, d: Dist) -> dict:
    """Every rank writes its rows of every sharded store of `model` into a fresh directory
    beside checkpoint file `path` (collective); the manifest the checkpoint file records."""
    root = shard_root(path)
    taken = [int(p.name) for p in root.glob("[0-9]*") if p.name.isdigit()] if d.main else []
    number = int(d.all_sum(torch.tensor([max(taken, default=0) + 1 if d.main else 0]))[0])
    directory = root / f"{number:06d}"
    local, layout = {}, {}
    for name, store in stores(model).items():
        for tensor, value in _local(store).items():
            local[_key(name, tensor, d.rank)] = value
        layout[name] = {
            "rows": store.total_rows,
            "table_rows": store.table_rows,
            "layout": store.layout.name,
            "dim": store.dim,
            "adagrad": store.optimizer == "adagrad",
        }
    with warnings.catch_warnings():  # one process: "assuming the intent is to save in a single
        warnings.simplefilter("ignore", UserWarning)  # process", as intended
        dcp.save(local, storage_writer=FileSystemWriter(directory), process_group=d.host_group)
    digest = torch.frombuffer(bytearray(bytes.fromhex(structure_digest(local))), dtype=torch.uint8)
    digests = [bytes(t.flatten().tolist()).hex() for t in d.gather_rows(digest.unsqueeze(1))]
    return {
        "dir": f"{root.name}/{directory.name}",
        "world": d.world,
        "stores": layout,
        "digests": digests,
    }


def remove_older_shards(path: Path, manifest: dict) -> None:
    """After checkpoint file `path` names its new shard directory: the older ones go."""
    keep = Path(manifest["dir"]).name
    for old in shard_root(path).glob("*"):
        if old.name != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def read_shards(path: Path, manifest: dict, part: tuple[int, int] = (0, 1)) -> dict:
    """The sharded stores' tensors named by checkpoint file `path`, by state_dict key: this
    rank's rows when `part` = (rank, world) has the checkpoint's world size, else the whole
    stores (every part read and interleaved). One line for anything missing or altered."""
    directory = path.parent / manifest["dir"]
    world = int(manifest["world"])
    ranks = [part[0]] if part[1] == world else list(range(world))
    parts: dict[int, dict[str, torch.Tensor]] = {}
    layouts = {
        name: make_layout(s.get("layout", "rows"), s.get("table_rows", [s["rows"]]), world)
        for name, s in manifest["stores"].items()
    }
    for r in ranks:
        parts[r] = {}
        for name, s in manifest["stores"].items():
            n = layouts[name].count(r)
            parts[r][_key(name, "weight", r)] = torch.empty(n, int(s["dim"]))
            if s["adagrad"]:
                parts[r][_key(name, "opt_state", r)] = torch.empty(n)
    wanted = {k: v for p in parts.values() for k, v in p.items()}
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process"
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(wanted, storage_reader=SafeReader(directory), no_dist=True)
    except (CheckpointException, OSError, RuntimeError, ValueError) as e:
        cause = _cause(e)
        if isinstance(cause, HotrecError):
            raise cause from None
        first = (str(cause).strip() or type(cause).__name__).splitlines()[0]
        raise HotrecError(f"{path}: its shards in {directory} cannot be read: {first}") from None
    for r, tensors in parts.items():
        if structure_digest(tensors) != manifest["digests"][r]:
            raise HotrecError(
                f"{path}: rank {r}'s shard in {directory} does not match its checksum: corrupt"
            )
    out = {}
    for name, s in manifest["stores"].items():
        for tensor in ("weight", "opt_state"):
            if tensor == "opt_state" and not s["adagrad"]:
                out[f"{name}.{tensor}"] = torch.zeros(0)
            elif len(ranks) == 1:
                out[f"{name}.{tensor}"] = parts[ranks[0]][_key(name, tensor, ranks[0])]
            else:
                first = parts[0][_key(name, tensor, 0)]
                whole = first.new_empty((int(s["rows"]), *first.shape[1:]))
                for r in ranks:
                    layouts[name].place(whole, r, parts[r][_key(name, tensor, r)])
                out[f"{name}.{tensor}"] = whole
    return out
