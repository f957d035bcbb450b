"""Where a multi-hot (bag) table's ids live in a split directory, and the one-line refusal of
code that reads one-hot ids only."""

from __future__ import annotations

from dataclasses import dataclass

from hotrec.errors import HotrecError
from hotrec.types import Schema


def require_one_hot(schema: Schema, what: str) -> None:
    """One-line refusal for code that does not take multi-hot (bag) tables yet."""
    if schema.has_bags:
        bags = ", ".join(schema.tables[t].name for t in schema.bag_tables)
        raise HotrecError(f"{what} does not take multi-hot tables yet ({bags} in this dataset)")


def bag_files(table: int) -> tuple[str, str]:
    """File names of a bag table's values and offsets inside a split directory."""
    return f"bag-{table}-values.npy", f"bag-{table}-offsets.npy"


@dataclass(frozen=True)
class BagLayout:
    """Where each table's ids are in a split with bag tables: `one_hot` (schema indices of
    sparse.npy's columns) and `bag` (schema indices of the bag arrays, in order)."""

    num_tables: int
    one_hot: tuple[int, ...]
    bag: tuple[int, ...]

    @classmethod
    def of(cls, schema: Schema) -> BagLayout | None:
        if not schema.has_bags:
            return None
        return cls(schema.num_tables, tuple(schema.one_hot_tables), tuple(schema.bag_tables))
