"""A growing hash index of 32-bit keys with counts, and the per-table Mapper built on it.

Used by the Criteo preparer's first pass: each categorical key gets a provisional code (1, 2,
...; MISSING -> 0) and its count goes up. The codes are spooled to disk, and once all counts
are known they are remapped to frequency-ranked ids with one gather (`remap`). That replaces
a per-chunk group-by plus a second-pass sorted lookup with about one memory access per value.

`Mapper` holds one index per categorical table for a streaming preparer, safe to use from
several threads, and turns the codes into ids once the counts are complete.

Open addressing with linear probing, load factor <= 1/2. Each slot is one int64 holding
(key + 1) in the low 33 bits and the code above, so a probe is one gather; 0 = empty slot.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from hotrec.data.categorical import MISSING, Vocabulary, hash_ids, save_vocabularies

KEY_LIMIT = 1 << 32  # keys must be MISSING or in [0, KEY_LIMIT)
_LOW = np.int64((1 << 33) - 1)
_SHIFT = np.int64(33)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier


class KeyIndex:
    """key -> code (1..K) with per-code counts; MISSING -> code 0.

    Codes of new keys follow their sorted order within each `add` call; which code a key gets
    does not matter downstream, only the key behind each code (keys_) and its count."""

    def __init__(self, capacity: int = 1 << 10) -> None:
        self.size = 0  # distinct keys K
        self.keys_ = np.empty(capacity // 2, dtype=np.int64)  # keys_[c - 1] has code c
        self.counts_ = np.zeros(capacity // 2 + 1, dtype=np.int64)  # counts_[c]; [0] = missing
        self._slots = np.zeros(capacity, dtype=np.int64)
        self._bits = capacity.bit_length() - 1

    def _home(self, tagged: np.ndarray) -> np.ndarray:
        """First probe slot of each key + 1 (multiply-shift hash)."""
        h = tagged.view(np.uint64) * _GOLDEN
        return (h >> np.uint64(64 - self._bits)).view(np.int64)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """int64 keys -> int64 codes, 0 for MISSING and for keys not yet indexed."""
        tagged = keys + 1  # MISSING -> 0, which matches the first empty slot: code 0
        mask = len(self._slots) - 1
        pos = self._home(tagged)
        slot = self._slots[pos]
        hit = (slot & _LOW) == tagged
        codes = slot >> _SHIFT
        codes[~hit] = 0
        todo = np.flatnonzero(~hit & (slot != 0))
        while len(todo):  # linear probing for the keys not in their home slot
            pos_t = (pos[todo] + 1) & mask
            pos[todo] = pos_t
            slot = self._slots[pos_t]
            hit = (slot & _LOW) == tagged[todo]
            codes[todo[hit]] = slot[hit] >> _SHIFT
            todo = todo[~hit & (slot != 0)]
        return codes

    def _insert(self, keys: np.ndarray, codes: np.ndarray) -> None:
        """Place distinct new keys with their codes into empty slots."""
        mask = len(self._slots) - 1
        tagged = keys + 1
        packed = tagged | (codes << _SHIFT)
        pos = self._home(tagged)
        todo = np.arange(len(keys))
        while len(todo):
            pos_t = pos[todo]
            free = self._slots[pos_t] == 0
            # Several keys may claim one free slot in a round: the last write wins, the
            # others move on to the next slot.
            self._slots[pos_t[free]] = packed[todo[free]]
            won = free & (self._slots[pos_t] == packed[todo])
            todo = todo[~won]
            pos[todo] = (pos[todo] + 1) & mask

    def _grow(self, needed: int) -> None:
        """Keep the load factor <= 1/2: rehash into a larger table, enlarge keys and counts."""
        capacity = len(self._slots)
        if needed * 2 <= capacity:
            return
        while needed * 2 > capacity:
            capacity *= 2
        self._slots = np.zeros(capacity, dtype=np.int64)
        self._bits = capacity.bit_length() - 1
        self._insert(self.keys_[: self.size], np.arange(1, self.size + 1, dtype=np.int64))
        keys = np.empty(capacity // 2, dtype=np.int64)
        keys[: self.size] = self.keys_[: self.size]
        counts = np.zeros(capacity // 2 + 1, dtype=np.int64)
        counts[: self.size + 1] = self.counts_[: self.size + 1]
        self.keys_, self.counts_ = keys, counts

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Codes of `keys` (int64 [n], MISSING or in [0, 2**32)), indexing and counting them."""
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        codes = self.lookup(keys)
        absent = np.flatnonzero(codes == 0)
        absent = absent[keys[absent] != MISSING]
        if len(absent):
            new = np.sort(keys[absent])
            new = new[np.concatenate([[True], new[1:] != new[:-1]])]  # distinct, sorted
            if new[0] < 0 or new[-1] >= KEY_LIMIT:
                raise ValueError("KeyIndex keys must be MISSING or in [0, 2**32)")
            self._grow(self.size + len(new))
            self._insert(new, np.arange(self.size + 1, self.size + 1 + len(new), dtype=np.int64))
            self.keys_[self.size : self.size + len(new)] = new
            self.size += len(new)
            codes[absent] = self.lookup(keys[absent])
        if self.size + 1 <= 4 * len(codes):
            self.counts_[: self.size + 1] += np.bincount(codes, minlength=self.size + 1)
        else:
            np.add.at(self.counts_, codes, 1)
        return codes

    def counts(self) -> pl.DataFrame:
        """Columns key, count (int64) of every indexed key, as CountAccumulator.counts gives."""
        return pl.DataFrame(
            {"key": self.keys_[: self.size], "count": self.counts_[1 : self.size + 1]},
            schema={"key": pl.Int64, "count": pl.Int64},
        )

    def remap(self, vocab: Vocabulary) -> np.ndarray:
        """Gather table code -> vocabulary id ([K + 1], entry 0 = 0 for missing)."""
        ids = vocab.map(self.keys_[: self.size])
        return np.concatenate([[0], ids]).astype(np.int64)


def workers() -> int:
    """Threads to use: the cores this process may run on (HOTREC_THREADS overrides)."""
    return int(os.environ.get("HOTREC_THREADS", 0)) or len(os.sched_getaffinity(0))


class Mapper:
    """Categorical keys -> codes in pass 1, codes -> table ids in pass 2.

    Vocabulary mode: one KeyIndex per table, each behind a lock so that blocks can be encoded
    on several threads; which code a key gets may depend on thread timing, the final ids do
    not (they come from the keys and their total counts). Hashing mode: codes are the ids."""

    def __init__(self, names: tuple[str, ...], hash_rows: int | None, min_count: int) -> None:
        self.names, self.hash_rows, self.min_count = names, hash_rows, min_count
        self.indexes = [KeyIndex() for _ in names] if hash_rows is None else []
        self.locks = [threading.Lock() for _ in self.indexes]
        big = hash_rows is not None and hash_rows >= 2**31
        self.code_dtype = np.dtype(np.int64 if big else np.int32)

    def encode(self, keys: np.ndarray, turn: int = 0) -> np.ndarray:
        """[T, n] keys -> [n, T] codes, counting the keys. Tables busy in another thread
        are skipped and come back later, so threads do not queue behind each other."""
        codes = np.empty(keys.shape[::-1], dtype=self.code_dtype)
        if self.hash_rows is not None:
            codes[:] = hash_ids(keys.T, self.hash_rows)
            return codes
        num = len(self.indexes)
        todo = deque((turn * num // 2 + k) % num for k in range(num))
        skipped = 0
        while todo:
            t = todo.popleft()
            # Wait only when every remaining table is busy.
            if not self.locks[t].acquire(blocking=skipped >= len(todo) + 1):
                todo.append(t)
                skipped += 1
                continue
            try:
                codes[:, t] = self.indexes[t].add(keys[t])
            finally:
                self.locks[t].release()
            skipped = 0
        return codes

    def uncount(self, codes: np.ndarray) -> None:
        """Take back the counts of rows that will not be written ([m, T] codes)."""
        for t, index in enumerate(self.indexes):
            with self.locks[t]:
                np.subtract.at(index.counts_, codes[:, t], 1)

    def finish(self, vocab_dir: Path) -> list[int]:
        """Build and save the vocabularies (tables in parallel); returns each table's rows."""
        if self.hash_rows is not None:
            return [self.hash_rows] * len(self.names)

        def build(index: KeyIndex) -> tuple[Vocabulary, np.ndarray]:
            vocab = Vocabulary.from_counts(index.counts(), self.min_count)
            return vocab, index.remap(vocab)

        with ThreadPoolExecutor(workers()) as pool:
            vocabs, remaps = zip(*pool.map(build, self.indexes), strict=True)
        save_vocabularies(list(vocabs), list(self.names), vocab_dir)
        total = sum(len(r) for r in remaps)
        dtype = np.int32 if total < 2**31 else np.int64  # int32 gathers are much faster
        self._offsets = np.cumsum([0] + [len(r) for r in remaps[:-1]]).astype(dtype)
        self._remap = np.concatenate(remaps).astype(dtype)
        return [v.rows for v in vocabs]

    def ids(self, codes: np.ndarray) -> np.ndarray:
        """[n, T] codes -> [n, T] ids (one gather through all tables' remaps)."""
        if self.hash_rows is not None:
            return codes
        return self._remap[codes + self._offsets]
