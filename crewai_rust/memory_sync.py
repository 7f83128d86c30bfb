"""One set of memory records, whichever backend opens the memory directory.

A memory directory can hold two stores: upstream's LanceDB table
(``memories.lance``, written by the Python backend) and the Rust store
(``memories.sqlite3``). Each backend reads and writes only its own store, and
takes in what the other one changed when it opens the directory:

- ``RustMemoryStorage``, on open: if LanceDB's table changed since the Rust
  side last looked, LanceDB's changes are applied to the Rust store;
- ``LanceDBStorage`` (through the fork's patch), on open: if the Rust store
  changed since the Python side last looked, the Rust store's changes are
  applied to LanceDB.

"Changes" are taken against the *base*: for every record id, a fingerprint of
the version both stores last agreed on, kept in the Rust store's file. A side
whose version differs from the base changed it (a write, an update, a touch, a
delete or a reset); the other side takes that change unless it changed the
same record too. That happens only when both backends run at once on one
directory; then a record beats a deletion (nothing is lost), and of two
versions the later ``last_accessed`` wins (then the greater fingerprint, so
both sides choose alike). The losing side's change is not applied; the
winner's is, by whichever side opens next.

A side that cannot take a change (a dimension clash with records it keeps, an
unreadable file) logs an error naming the file and leaves the change pending:
it is tried again at the next open, never dropped.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crewai_rust.memory import (
    DB_FILENAME,
    LANCEDB_TABLE,
    StoredRecord,
    _parse_time,
    _record,
    _time_key,
    _upstream_dimension_error,
    _vector_bytes,
    logger,
)

if TYPE_CHECKING:
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    from crewai_rust.memory import RustMemoryStorage

# The Rust store's `memories` table has a column per StoredRecord field.
_ROW_COLUMNS = ", ".join(StoredRecord._fields)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS lancedb_sync_base (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lancedb_sync_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# What each side last merged: LanceDB's table as the Rust side saw it, the
# Rust store as the Python side saw it.
_LANCEDB_SEEN = "lancedb_seen"
_RUST_SEEN = "rust_seen"
# Set once the base exists (a store from before the base only knew which
# LanceDB ids it had imported).
_BASE_FORMAT = "base_format"
_WRITE_BATCH = 1000
_BUSY_TIMEOUT_S = 30.0

_SCHEMA_PLACEHOLDER = "__schema_placeholder__"


def fingerprint(row: StoredRecord) -> str:
    """A record version's fingerprint: every stored field but the id (and
    ``created_key``, derived from ``created_at``)."""
    digest = hashlib.blake2b(digest_size=16)
    fields = (row.content, row.scope, row.categories_str, row.metadata_str, float(row.importance), row.created_at,
              row.last_accessed, row.source, bool(row.private))
    digest.update(repr(fields).encode("utf-8", "surrogatepass"))
    digest.update(row.vector or b"")
    return digest.hexdigest()


@dataclass
class _Side:
    """One store's records: a row and a fingerprint per id. LanceDB may hold
    several rows for one id (its ``save`` appends); they count as one version
    whose row is the latest accessed."""

    rows: dict[str, StoredRecord] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: Iterable[StoredRecord]) -> _Side:
        side = cls()
        duplicates: dict[str, list[str]] = {}
        for row in rows:
            record_id = row.id
            version_print = fingerprint(row)
            if record_id in side.rows:
                duplicates.setdefault(record_id, [side.fingerprints[record_id]]).append(version_print)
                if _accessed_key(row) < _accessed_key(side.rows[record_id]):
                    continue
            side.rows[record_id] = row
            side.fingerprints[record_id] = version_print
        for record_id, prints in duplicates.items():
            side.fingerprints[record_id] = "dup:" + hashlib.blake2b("".join(sorted(prints)).encode(),
                                                                    digest_size=16).hexdigest()
        return side


def _accessed_key(row: StoredRecord) -> int:
    try:
        return _time_key(_parse_time(str(row.last_accessed)))
    except ValueError:
        return 0


@dataclass
class _Plan:
    """What one side takes from the other, and the base afterwards."""

    upserts: list[StoredRecord] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    base_set: dict[str, str] = field(default_factory=dict)
    base_drop: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.upserts or self.deletes or self.base_set or self.base_drop)


def _theirs_wins(theirs: StoredRecord | None, their_print: str | None, mine: StoredRecord | None, my_print: str | None) -> bool:
    """Both sides changed one record: a record beats a deletion, then the later
    ``last_accessed``, then the greater fingerprint (the same answer from either side)."""
    if theirs is None or mine is None:
        return mine is None
    return (_accessed_key(theirs), their_print or "") > (_accessed_key(mine), my_print or "")


def plan_merge(theirs: _Side, mine: _Side, base: dict[str, str]) -> _Plan:
    """The changes ``theirs`` made since ``base`` that ``mine`` should take."""
    plan = _Plan()
    for record_id in theirs.fingerprints.keys() | base.keys():
        their_print = theirs.fingerprints.get(record_id)
        base_print = base.get(record_id)
        if their_print == base_print:
            continue
        my_print = mine.fingerprints.get(record_id)
        if my_print != their_print and my_print != base_print:
            their_row, my_row = theirs.rows.get(record_id), mine.rows.get(record_id)
            if not _theirs_wins(their_row, their_print, my_row, my_print):
                continue  # ours stays, and the other side takes it when it opens
        if their_print is None:
            plan.base_drop.append(record_id)
            if my_print is not None:
                plan.deletes.append(record_id)
        else:
            plan.base_set[record_id] = their_print
            if my_print != their_print:
                plan.upserts.append(theirs.rows[record_id])
    return plan


# --------------------------------------------------------------------------- the Rust store's file


class _StoreFile:
    """The sync's tables in the Rust store's file, through Python's sqlite3 (the
    same SQLite library the native store uses whenever it runs: see
    ``_backend.sqlite_shared_with_python``)."""

    def __init__(self, path: Path) -> None:
        # mode=rw: never create the file (a directory LanceDB alone uses stays so).
        self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True,
                                    timeout=_BUSY_TIMEOUT_S, isolation_level=None)

    def close(self) -> None:
        self.conn.close()

    def is_memory_store(self) -> bool:
        found = self.conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('store_meta', 'memories')"
        ).fetchone()[0]
        return found == 2

    @contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def ensure_schema(self) -> None:
        if self.conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'lancedb_sync_state'").fetchone()[0]:
            return
        self.conn.executescript(_SCHEMA)

    def state(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM lancedb_sync_state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def rust_marker(self) -> str:
        """Changes with every commit to the records (the store's epoch and sequence number)."""
        meta = dict(self.conn.execute("SELECT key, value FROM store_meta WHERE key IN ('epoch', 'seq')"))
        return f"{meta.get('epoch', 0)}:{meta.get('seq', 0)}"

    def rust_side(self) -> _Side:
        rows = self.conn.execute(f"SELECT {_ROW_COLUMNS} FROM memories")
        return _Side.of(StoredRecord(*row[:10], bool(row[10]), bytes(row[11])) for row in rows)

    def has_base(self) -> bool:
        return self.state(_BASE_FORMAT) is not None

    def base(self, lance: _Side, rust: _Side) -> dict[str, str]:
        """The base; for a store from before it, the ids the old one-way import
        brought count as agreed (as LanceDB holds them, else as the Rust store does)."""
        if self.has_base():
            return dict(self.conn.execute("SELECT id, fingerprint FROM lancedb_sync_base"))
        has_imported = self.conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'imported'").fetchone()[0]
        if not has_imported:
            return {}
        base = {}
        for (record_id,) in self.conn.execute("SELECT id FROM imported WHERE source = 'lancedb:memories'"):
            agreed = lance.fingerprints.get(record_id) or rust.fingerprints.get(record_id)
            if agreed is not None:
                base[record_id] = agreed
        return base

    def commit_plan(self, plan: _Plan, base: dict[str, str], seen: tuple[str, str]) -> None:
        """Record the base after ``plan`` (all of it the first time) and what was seen.

        A changed base also voids what the *other* side last saw: its "nothing
        changed since" no longer means "nothing to take" (LanceDB emptied after
        taking the Rust store's records looks, by its files, as it did before).
        """
        seen_key, _ = seen
        other_seen = _RUST_SEEN if seen_key == _LANCEDB_SEEN else _LANCEDB_SEEN
        with self.transaction(immediate=True):
            if plan.base_set or plan.base_drop or not self.has_base():
                self.conn.execute("DELETE FROM lancedb_sync_state WHERE key = ?", (other_seen,))
            if not self.has_base():
                self.conn.execute("DELETE FROM lancedb_sync_base")
                self.conn.executemany("INSERT INTO lancedb_sync_base (id, fingerprint) VALUES (?, ?)", base.items())
                self._set_state(_BASE_FORMAT, "1")
            self.conn.executemany("DELETE FROM lancedb_sync_base WHERE id = ?", ((i,) for i in plan.base_drop))
            self.conn.executemany("INSERT OR REPLACE INTO lancedb_sync_base (id, fingerprint) VALUES (?, ?)",
                                  plan.base_set.items())
            self._set_state(*seen)

    def _set_state(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO lancedb_sync_state (key, value) VALUES (?, ?)", (key, value))


# --------------------------------------------------------------------------- LanceDB's table


def _lancedb_table_dir(directory: Path) -> Path:
    return directory / f"{LANCEDB_TABLE}.lance"


def lancedb_marker(directory: Path) -> str:
    """Changes with every commit to LanceDB's table (each adds a manifest), with
    compaction, and when the table is dropped or recreated."""
    versions = _lancedb_table_dir(directory) / "_versions"
    try:
        entries = sorted(os.scandir(versions), key=lambda e: e.name)
    except FileNotFoundError:
        return "absent"
    digest = hashlib.blake2b(digest_size=16)
    for entry in entries:
        stat = entry.stat()
        digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def lancedb_rows(table: Any) -> list[StoredRecord]:
    """LanceDB's rows in the store's layout (the schema placeholder left out),
    with LanceDBStorage's ``_row_to_record`` defaults for missing values."""
    data = table.to_arrow()
    count = data.num_rows
    if count == 0:
        return []
    absent = [None] * count
    columns = {name: data.column(name).to_pylist() for name in data.column_names if name != "vector"}
    ids, contents, scopes = columns["id"], columns["content"], columns["scope"]
    created = columns["created_at"]
    categories, metadata = columns.get("categories_str", absent), columns.get("metadata_str", absent)
    importance, accessed = columns.get("importance", absent), columns.get("last_accessed", absent)
    sources, private = columns.get("source", absent), columns.get("private", absent)
    vectors = _vector_column_bytes(data.column("vector")) if "vector" in data.column_names else absent
    rows = []
    for i in range(count):
        record_id = str(ids[i])
        if record_id == _SCHEMA_PLACEHOLDER:
            continue
        created_at = str(created[i])
        rows.append(StoredRecord(
            id=record_id,
            content=str(contents[i]),
            scope=str(scopes[i]),
            categories_str=categories[i] or "[]",
            metadata_str=metadata[i] or "{}",
            importance=float(importance[i] if importance[i] is not None else 0.5),
            created_at=created_at,
            created_key=_time_key(_parse_time(created_at)),
            last_accessed=str(accessed[i] or created_at),
            source=sources[i] or "",
            private=bool(private[i]),
            vector=vectors[i],
        ))
    return rows


def _vector_column_bytes(column: Any) -> list[bytes | None]:
    import pyarrow as pa

    chunked = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if pa.types.is_fixed_size_list(chunked.type) and chunked.null_count == 0:
        width = chunked.type.list_size
        flat = chunked.values.cast(pa.float32()).to_numpy(zero_copy_only=False).astype("<f4", copy=False)
        data = flat.tobytes()
        step = width * 4
        return [data[i * step:(i + 1) * step] for i in range(len(chunked))]
    return [_vector_bytes(v, "vector") if v is not None else None for v in chunked.to_pylist()]


def _lancedb_dim(table: Any) -> int:
    try:
        return max(int(table.schema.field("vector").type.list_size), 0)
    except (KeyError, AttributeError, TypeError, ValueError):
        return 0


# --------------------------------------------------------------------------- the two directions


def _batches(items: list[Any]) -> Iterator[list[Any]]:
    """``items`` in writes of ``_WRITE_BATCH``."""
    for start in range(0, len(items), _WRITE_BATCH):
        yield items[start:start + _WRITE_BATCH]


def _sync_lock(directory: Path) -> Any:
    from crewai_core.lock_store import lock

    return lock(f"crewai_rust.memory_sync:{directory.resolve()}")


def _log_pending(target: str, directory: Path, exc: Exception) -> None:
    logger.error(
        "crewai_rust: taking the other memory backend's changes into %s in %s failed (%s: %s); they stay "
        "pending and are taken at the next open", target, directory, type(exc).__name__, exc,
    )


def pull_into_rust(storage: RustMemoryStorage) -> None:
    """``RustMemoryStorage`` on open: take in what LanceDB's table changed.

    A failure is logged, naming the directory and why; the changes stay
    pending for the next open and the storage opens regardless.
    """
    try:
        _pull_into_rust(storage)
    except Exception as exc:  # noqa: BLE001 - logged with its cause; the storage opens (upstream's outcome)
        _log_pending("the Rust store", storage.path, exc)


def _pull_into_rust(storage: RustMemoryStorage) -> None:
    directory = storage.path
    store_file = _StoreFile(storage.db_path)
    try:
        store_file.ensure_schema()
        marker = lancedb_marker(directory)
        if store_file.state(_LANCEDB_SEEN) == marker:
            return
        with _sync_lock(directory):
            marker = lancedb_marker(directory)
            if store_file.state(_LANCEDB_SEEN) == marker:
                return
            table = _open_lancedb_table(directory)
            theirs = _Side.of(lancedb_rows(table)) if table is not None else _Side()
            with store_file.transaction():
                mine = store_file.rust_side()
            base = store_file.base(lance=theirs, rust=mine)
            plan = plan_merge(theirs, mine, base)
            if plan.deletes:
                storage._store.delete_ids(plan.deletes)
            dim_hint = _lancedb_dim(table) if table is not None else 0
            if plan.upserts or (dim_hint and storage._store.vector_dim == 0 and storage._store.count() == 0):
                # An empty LanceDB table still fixes the dimension, as for LanceDBStorage.
                _save_rows_into_rust(storage, plan.upserts, dim_hint)
            store_file.commit_plan(plan, base, (_LANCEDB_SEEN, marker))
    finally:
        store_file.close()


def _open_lancedb_table(directory: Path) -> Any:
    if not _lancedb_table_dir(directory).is_dir():
        return None
    import lancedb

    return lancedb.connect(str(directory)).open_table(LANCEDB_TABLE)


def _save_rows_into_rust(storage: RustMemoryStorage, rows: list[StoredRecord], dim_hint: int) -> None:
    native = storage._store
    with _upstream_dimension_error():
        if native.vector_dim == 0 and dim_hint:
            native.ensure_dim(dim_hint)
        dims = {len(row.vector) // 4 for row in rows if row.vector is not None}
        if native.vector_dim and dims and dims != {native.vector_dim} and native.count() == 0:
            # Both sides were emptied and refilled at another dimension: the store follows.
            native.reset_all()
        for batch in _batches(rows):
            native.save(batch)


def pull_into_lancedb(storage: LanceDBStorage) -> None:
    """``LanceDBStorage`` on open: take in what the Rust store beside it changed.

    A no-op for other tables than ``memories`` and for directories without a
    Rust store. A failure is logged as :func:`pull_into_rust`'s.
    """
    try:
        _pull_into_lancedb(storage)
    except Exception as exc:  # noqa: BLE001 - logged with its cause; the storage opens (upstream's outcome)
        _log_pending("LanceDB", Path(storage._path), exc)


def _pull_into_lancedb(storage: LanceDBStorage) -> None:
    if getattr(storage, "_table_name", None) != LANCEDB_TABLE:
        return
    directory = Path(storage._path)
    db_path = directory / DB_FILENAME
    if not db_path.is_file():
        return
    store_file = _StoreFile(db_path)
    try:
        if not store_file.is_memory_store():
            logger.error("crewai_rust: %s is not a crewai memory store; LanceDB in %s was not synced with it",
                         db_path, directory)
            return
        store_file.ensure_schema()
        if store_file.state(_RUST_SEEN) == store_file.rust_marker():
            return
        with _sync_lock(directory):
            with store_file.transaction():
                marker = store_file.rust_marker()
                if store_file.state(_RUST_SEEN) == marker:
                    return
                theirs = store_file.rust_side()
            table = storage._table
            mine = _Side.of(lancedb_rows(table)) if table is not None else _Side()
            base = store_file.base(lance=mine, rust=theirs)
            plan = plan_merge(theirs, mine, base)
            if not _apply_to_lancedb(storage, plan, mine):
                return
            store_file.commit_plan(plan, base, (_RUST_SEEN, marker))
    finally:
        store_file.close()


def _apply_to_lancedb(storage: LanceDBStorage, plan: _Plan, mine: _Side) -> bool:
    from crewai.memory.storage.backend import EmbeddingDimensionMismatchError

    replaced = [row.id for row in plan.upserts if row.id in mine.rows]
    gone = plan.deletes + replaced
    for batch in _batches(gone):
        storage.delete(record_ids=batch)
    records = [_record(row) for row in plan.upserts]
    try:
        for batch in _batches(records):
            storage.save(batch)
    except EmbeddingDimensionMismatchError as exc:
        if storage.count() != 0:
            logger.error(
                "crewai_rust: the memory store %s holds %s-dimensional embeddings, LanceDB in %s %s-dimensional "
                "ones; its records were not copied into LanceDB (reset one of them to switch dimensions)",
                Path(storage._path) / DB_FILENAME, exc.new_dim, storage._path, exc.stored_dim,
            )
            return False
        # Both sides were emptied and refilled at another dimension: the table follows.
        storage.reset()
        for batch in _batches(records):
            storage.save(batch)
    return True


__all__ = ["fingerprint", "lancedb_marker", "plan_merge", "pull_into_lancedb", "pull_into_rust"]
