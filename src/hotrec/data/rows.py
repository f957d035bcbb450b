"""Accounting of malformed input rows: counted per kind, or fatal with file:line in strict mode.

Invariant every preparer keeps: rows_read == rows_written + rows_rejected + rows_dropped. A row
that is repaired (e.g. a CRLF line ending) is written and also counted under `repaired`; a
well-formed row left out on purpose (e.g. negative down-sampling) is counted in `rows_dropped`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hotrec.errors import MalformedInput

# Kinds of malformed rows, as reported in meta.json.
REJECT_KINDS = (
    "blank_line",
    "field_count",
    "bad_integer",
    "bad_hex",
    "bad_value",
    "truncated_last_line",
)
REPAIR_KINDS = ("crlf",)


@dataclass
class RowReport:
    """Counts rows read / written / rejected (per kind) / repaired (per kind)."""

    strict: bool = False
    rows_read: int = 0
    rows_written: int = 0
    rows_dropped: int = 0  # well-formed rows left out on purpose (not malformed)
    rejected: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    first_example: dict = field(default_factory=dict)  # kind -> "file:line"

    def reject(self, kind: str, path: str, line: int, count: int = 1, detail: str = "") -> None:
        """Record `count` rejected rows of one kind; `line` is the first one (1-based)."""
        if count <= 0:
            return
        if self.strict:
            raise MalformedInput(path, line, kind, detail)
        self.rejected[kind] += count
        self.first_example.setdefault(kind, f"{path}:{line}")

    def repair(self, kind: str, path: str, line: int, count: int = 1) -> None:
        if count <= 0:
            return
        if self.strict:
            raise MalformedInput(path, line, kind, "use without --strict to repair it")
        self.repaired[kind] += count
        self.first_example.setdefault(kind, f"{path}:{line}")

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def check(self) -> None:
        """Raise if the invariant rows_read == written + rejected + dropped is broken (a bug)."""
        if self.rows_read != self.rows_written + self.rows_rejected + self.rows_dropped:
            raise AssertionError(
                f"row accounting broken: read {self.rows_read} != written {self.rows_written}"
                f" + rejected {self.rows_rejected} + dropped {self.rows_dropped}"
            )

    def to_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_rejected": self.rows_rejected,
            "rows_dropped": self.rows_dropped,
            "rejected": dict(self.rejected),
            "repaired": dict(self.repaired),
            "first_example": dict(self.first_example),
        }

    def summary(self) -> str:
        """One line for the end of `hotrec prepare`."""
        s = f"read {self.rows_read:,} rows, wrote {self.rows_written:,}"
        if self.rows_dropped:
            s += f", dropped {self.rows_dropped:,}"
        s += f", rejected {self.rows_rejected:,}"
        if self.rejected:
            s += " (" + ", ".join(f"{k}: {v:,}" for k, v in sorted(self.rejected.items())) + ")"
        if self.repaired:
            s += "; repaired " + ", ".join(f"{k}: {v:,}" for k, v in sorted(self.repaired.items()))
        return s
