"""Memory component: ``RustMemoryStorage``, the unified ``Memory``'s storage on a Rust core.

``RustMemoryStorage`` is a complete ``StorageBackend`` (upstream's
``crewai.memory.storage.backend``) with the semantics of upstream's
``LanceDBStorage``: the same scores (``1 / (1 + squared L2 distance)``,
LanceDB's default metric), the same raw string prefix matching of scopes, the
same dimension rules and errors. Records live in a SQLite file (WAL) beside
where LanceDB keeps its table; each storage keeps a mirror of the file in
native memory, so search is an exact scan of a contiguous f32 matrix with the
GIL released (from 50,000 records, unfiltered searches go through an HNSW
index: see ``RustMemoryStorage``), and the scope queries (``list_scopes``,
``list_categories``, ``get_scope_info``, ``count``) cost O(scopes) instead of
a Python loop over every row.

Where it deliberately differs from ``LanceDBStorage``:

- filters (scope, categories, metadata) apply *before* ranking, so ``search``
  returns up to ``limit`` matches where LanceDB's ``limit * 3`` over-fetch
  followed by filtering can return fewer;
- saving a record whose id exists replaces it (LanceDB appends a duplicate row);
- no 50,000-row cap on the scans behind the scope queries;
- bad input raises ``ValueError`` naming the field (NaN/inf or empty vectors,
  non-str categories or scope prefixes, ``limit <= 0``, a metadata filter json
  cannot encode).

Switching backends loses nothing: on open, each backend takes in what the
other changed in the same directory (writes, updates, deletes, resets), see
``crewai_rust.memory_sync``. The Rust side only reads LanceDB's files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from crewai_rust._backend import (
    NativeModuleMissingError,
    decider,
    load_native,
    native_import_error,
    use_rust,
)

if TYPE_CHECKING:
    from crewai.memory.storage.backend import StorageBackend
    from crewai.memory.types import MemoryRecord, ScopeInfo

logger = logging.getLogger("crewai_rust")

DB_FILENAME = "memories.sqlite3"
# LanceDBStorage's default table, as a directory of its database.
LANCEDB_TABLE = "memories"
# Below this many records exact search costs a few milliseconds at most, less
# than building the index (seconds of both cores per process) would repay.
DEFAULT_APPROXIMATE_FROM_ROWS = 50_000

_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def default_storage_path() -> Path:
    """Where ``LanceDBStorage()`` keeps memory: ``$CREWAI_STORAGE_DIR/memory`` or the platform data dir."""
    storage_dir = os.environ.get("CREWAI_STORAGE_DIR")
    if storage_dir:
        return Path(storage_dir) / "memory"
    from crewai_core.paths import db_storage_path

    return Path(db_storage_path()) / "memory"


def _native() -> Any:
    native = load_native()
    if native is None:
        raise NativeModuleMissingError(f"crewai_rust._native is not importable: {native_import_error()}")
    return native


@contextmanager
def _upstream_dimension_error() -> Iterator[None]:
    """The native store's dimension error as upstream's ``EmbeddingDimensionMismatchError``."""
    try:
        yield
    except _native().EmbeddingDimensionError as exc:
        from crewai.memory.storage.backend import EmbeddingDimensionMismatchError

        stored, new = exc.args
        raise EmbeddingDimensionMismatchError(stored, new) from None


def _time_key(value: datetime) -> int:
    """Microseconds since the epoch; naive values (upstream stores naive UTC) count as UTC."""
    if value.tzinfo is None:
        return (value - _EPOCH) // _MICROSECOND
    return (value - _EPOCH_UTC) // _MICROSECOND


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _vector_bytes(values: Sequence[float], field: str) -> bytes:
    try:
        return array("f", values).tobytes()
    except (TypeError, OverflowError) as exc:
        raise ValueError(f"{field} must be a list of numbers: {exc}") from exc


def _floats(data: bytes) -> list[float]:
    vector = array("f")
    vector.frombytes(data)
    return vector.tolist()


class StoredRecord(NamedTuple):
    """A record as the store keeps it: LanceDBStorage's row layout
    (``_record_to_row``) plus ``created_key``, the vector as float32 bytes.

    The layout's one Python definition: what ``RustMemoryStorage`` hands the
    native store (which reads these attributes, and returns ``MemoryRow``s with
    the same ones), and the columns of the store's ``memories`` table, which
    ``crewai_rust.memory_sync`` reads.
    """

    id: str
    content: str
    scope: str
    categories_str: str  # json.dumps(record.categories)
    metadata_str: str  # json.dumps(record.metadata)
    importance: float
    created_at: str  # isoformat()
    created_key: int  # created_at in microseconds since the epoch (naive = UTC)
    last_accessed: str  # isoformat()
    source: str  # record.source or ""
    private: bool
    vector: bytes | None  # None: no embedding (stored as zeros)


def _row(record: MemoryRecord) -> StoredRecord:
    """A record in the store's layout, checked for what the store refuses."""
    embedding = record.embedding
    if embedding is None:
        vector = None
    elif len(embedding) == 0:
        raise ValueError(f"embedding of record {record.id!r} is empty; use None for a record without one")
    else:
        vector = _vector_bytes(embedding, f"embedding of record {record.id!r}")
    if "\x00" in record.scope:
        raise ValueError(f"scope of record {record.id!r} contains a NUL character")
    return StoredRecord(
        id=record.id,
        content=record.content,
        scope=record.scope,
        categories_str=json.dumps(record.categories),
        metadata_str=json.dumps(record.metadata),
        importance=record.importance,
        created_at=record.created_at.isoformat(),
        created_key=_time_key(record.created_at),
        last_accessed=record.last_accessed.isoformat(),
        source=record.source or "",
        private=record.private,
        vector=vector,
    )


def _record(row: Any) -> MemoryRecord:
    """LanceDBStorage's ``_row_to_record`` over a stored row (a ``StoredRecord``
    or the native store's ``MemoryRow``)."""
    from crewai.memory.types import MemoryRecord

    return MemoryRecord(
        id=row.id,
        content=row.content,
        scope=row.scope,
        categories=json.loads(row.categories_str) if row.categories_str else [],
        metadata=json.loads(row.metadata_str) if row.metadata_str else {},
        importance=row.importance,
        created_at=_parse_time(row.created_at),
        last_accessed=_parse_time(row.last_accessed),
        embedding=_floats(row.vector) if row.vector is not None else None,
        source=row.source or None,
        private=row.private,
    )


def _scope_prefix(value: str | None, field: str = "scope_prefix") -> str | None:
    """LanceDBStorage's test for a scope filter: a non-root prefix, trailing slashes stripped."""
    if value is None:
        return None
    if not isinstance(value, str):
        # ValueError like every other bad search argument of this storage (tested).
        raise ValueError(f"{field} must be a str or None, not {type(value).__name__}")  # noqa: TRY004
    return value.rstrip("/") if value.strip("/") else None


def _with_leading_slash(prefix: str) -> str:
    return prefix if prefix.startswith("/") else "/" + prefix


# A str the native side can hold: lone surrogates (which Python strings allow)
# mapped one-to-one as the store maps the strings of stored categories and
# metadata (rust/src/json.rs, parse_lossless): U+FFFF then U+E000 + (unit -
# 0xD800); U+FFFF itself doubled.
_UNIT_ESCAPE = "\uffff"


def _to_native_str(text: str) -> str:
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if _UNIT_ESCAPE not in text:
            return text
    out = []
    for ch in text:
        code = ord(ch)
        if code == 0xFFFF:
            out.append(_UNIT_ESCAPE * 2)
        elif 0xD800 <= code <= 0xDFFF:
            out.append(_UNIT_ESCAPE + chr(0xE000 + code - 0xD800))
        else:
            out.append(ch)
    return "".join(out)


def _from_native_str(text: str) -> str:
    if _UNIT_ESCAPE not in text:
        return text
    out, chars = [], iter(text)
    for ch in chars:
        if ch == _UNIT_ESCAPE:
            marked = next(chars)
            out.append(_UNIT_ESCAPE if marked == _UNIT_ESCAPE else chr(0xD800 + ord(marked) - 0xE000))
        else:
            out.append(ch)
    return "".join(out)


def _mapped_strings(value: Any) -> Any:
    """``value`` with every str (dict keys included) through :func:`_to_native_str`."""
    if isinstance(value, str):
        return _to_native_str(value)
    if isinstance(value, dict):
        return {(_to_native_str(k) if isinstance(k, str) else k): _mapped_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mapped_strings(v) for v in value]
    return value


def _categories(categories: list[str] | None) -> list[str]:
    if not categories:
        return []
    if isinstance(categories, str) or not all(isinstance(c, str) for c in categories):
        raise ValueError(f"categories must be a list of str, got {categories!r}")
    return [_to_native_str(c) for c in categories]


def _metadata_json(metadata_filter: dict[str, Any] | None) -> str | None:
    if not metadata_filter:
        return None
    try:
        return json.dumps(_mapped_strings(metadata_filter), allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata_filter values must be JSON values (as stored metadata is): {exc}") from exc


class RustMemoryStorage:
    """``StorageBackend`` for the unified ``Memory`` on crewai_rust's native store.

    Args:
        path: The directory LanceDBStorage would use (default
            ``$CREWAI_STORAGE_DIR/memory``, else the platform data dir). The
            store is the file ``<path>/memories.sqlite3``.
        vector_dim: The embedding dimension for a new store; by default the
            first saved embedding sets it. An existing store keeps its own.
        approximate_from_rows: From this many records on, searches without
            filters use an HNSW index (built in the background; exact search
            until it is ready) and measure its candidates exactly. The first
            32 searches through an index, and one in 128 after, are checked
            against exact search (and answered exactly); if the index finds
            less than 95% of the exact top k on the store's own queries, the
            storage goes back to exact search. None: always exact.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        vector_dim: int | None = None,
        approximate_from_rows: int | None = DEFAULT_APPROXIMATE_FROM_ROWS,
    ) -> None:
        self._path = Path(path) if path is not None else default_storage_path()
        self._path.mkdir(parents=True, exist_ok=True)
        self.db_path = self._path / DB_FILENAME
        self._store = _native().MemoryStore(str(self.db_path), approximate_from_rows=approximate_from_rows)
        from crewai_rust.memory_sync import pull_into_rust

        pull_into_rust(self)
        if vector_dim is not None:
            self._store.ensure_dim(vector_dim)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def vector_dim(self) -> int:
        """The store's embedding dimension; 0 until the first save (or ``vector_dim=``)."""
        return int(self._store.vector_dim)

    def _has_table(self) -> bool:
        # LanceDBStorage's ``self._table is not None``: a dimension is set.
        return self._store.vector_dim != 0

    # -- writes ------------------------------------------------------------

    def save(self, records: list[MemoryRecord]) -> None:
        if not records:
            return
        rows = [_row(record) for record in records]
        with _upstream_dimension_error():
            self._store.save(rows)

    def update(self, record: MemoryRecord) -> None:
        """Replace the record with the same id (adding it if absent)."""
        row = _row(record)
        with _upstream_dimension_error():
            self._store.update(row)

    def touch_records(self, record_ids: list[str]) -> None:
        """Set ``last_accessed`` of the given records to now (naive UTC, as upstream)."""
        if not record_ids or not self._has_table():
            return
        now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
        self._store.touch([str(record_id) for record_id in record_ids], now)

    def delete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        """Delete as LanceDBStorage does, branch for branch; returns how many were deleted."""
        if not self._has_table():
            return 0
        wanted = _categories(categories)
        metadata = _metadata_json(metadata_filter)
        if record_ids and not (wanted or metadata):
            return int(self._store.delete_ids([str(record_id) for record_id in record_ids]))
        prefix = _scope_prefix(scope_prefix)
        filters = _native().MemoryFilter
        if wanted or metadata:
            before = _time_key(older_than) if older_than else None
            criteria = {"categories": wanted, "metadata_json": metadata, "created_before": before}
            chosen = filters.prefix(prefix, **criteria) if prefix is not None else filters.any(**criteria)
            return int(self._store.delete_matching(chosen))
        before = _time_key(older_than) if older_than is not None else None
        if prefix is not None:
            # Upstream's scoped delete also matches the root scope "/".
            chosen = filters.prefix_or_root(_with_leading_slash(prefix), created_before=before)
        else:
            chosen = filters.any(created_before=before)
        return int(self._store.delete_matching(chosen))

    def reset(self, scope_prefix: str | None = None) -> None:
        """Delete everything (the next save may set a new dimension), or one scope's range."""
        if scope_prefix is None or scope_prefix.strip("/") == "":
            self._store.reset_all()
            return
        if not self._has_table():
            return
        prefix = scope_prefix.rstrip("/")
        self._store.delete_matching(_native().MemoryFilter.range(prefix, prefix + "/\uffff"))

    def optimize(self) -> None:
        """Make the approximate index ready now if the store is large enough to use
        it: loaded from the copy saved beside the store (``<file>-ann/``) when
        there is no index yet and the copy still covers the records, else built
        and saved there (LanceDBStorage's ``optimize`` compacts; the SQLite
        store needs no compaction)."""
        self._store.build_index()

    def index_status(self) -> dict[str, Any]:
        """The approximate index: ``state`` ("off", "building", "ready" or
        "disabled"), ``source`` of a ready index ("built" by this process or
        "loaded" from the copy an earlier one saved), ``measured_recall``
        against exact search, ``verified_searches``."""
        return dict(self._store.index_status())

    def close(self) -> None:
        """Close the store's connection so the file can be removed; a later call reopens it."""
        self._store.close()

    # -- reads -------------------------------------------------------------

    def get_record(self, record_id: str) -> MemoryRecord | None:
        row = self._store.get(str(record_id))
        return _record(row) if row is not None else None

    def search(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[MemoryRecord, float]]:
        """The nearest records among those the filters admit, best first: exact, or
        through the HNSW index for unfiltered searches of large stores (see
        ``approximate_from_rows``)."""
        prefix = _scope_prefix(scope_prefix)
        wanted = _categories(categories)
        metadata = _metadata_json(metadata_filter)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        query = _vector_bytes(query_embedding, "query_embedding")
        filters = _native().MemoryFilter
        criteria = {"categories": wanted, "metadata_json": metadata}
        chosen = filters.prefix(prefix, **criteria) if prefix is not None else filters.any(**criteria)
        with _upstream_dimension_error():
            hits = self._store.search(query, chosen, limit, float(min_score))
        return [(_record(row), score) for row, score in hits]

    def list_records(self, scope_prefix: str | None = None, limit: int = 200, offset: int = 0) -> list[MemoryRecord]:
        """Records in a scope, newest ``created_at`` first."""
        if limit <= 0 or offset < 0:
            return []
        prefix = _scope_prefix(scope_prefix)
        filters = _native().MemoryFilter
        chosen = filters.prefix(_with_leading_slash(prefix)) if prefix is not None else filters.any()
        return [_record(row) for row in self._store.list(chosen, limit, offset)]

    def get_scope_info(self, scope: str) -> ScopeInfo:
        from crewai.memory.types import ScopeInfo

        scope = scope.rstrip("/") or "/"
        prefix = scope if scope != "/" else ""
        if prefix and not prefix.startswith("/"):
            prefix = "/" + prefix
        summary = self._store.scope_summary(prefix, prefix + "/")
        return ScopeInfo(
            path=scope or "/",
            record_count=summary.record_count,
            categories=sorted(_from_native_str(c) for c in summary.categories),
            oldest_record=_parse_time(summary.oldest) if summary.oldest is not None else None,
            newest_record=_parse_time(summary.newest) if summary.newest is not None else None,
            child_scopes=summary.child_scopes,
        )

    def list_scopes(self, parent: str = "/") -> list[str]:
        parent = parent.rstrip("/") or ""
        prefix = (parent + "/") if parent else "/"
        return list(self._store.child_scopes(prefix, prefix.rstrip("/") or "/"))

    def list_categories(self, scope_prefix: str | None = None) -> dict[str, int]:
        prefix = _scope_prefix(scope_prefix)
        return {_from_native_str(c): n for c, n in self._store.category_counts(prefix or "").items()}

    def count(self, scope_prefix: str | None = None) -> int:
        if scope_prefix is None or scope_prefix.strip("/") == "":
            return int(self._store.count())
        return self.get_scope_info(scope_prefix).record_count

    # -- async: the native calls release the GIL, so they run off the event loop

    async def asave(self, records: list[MemoryRecord]) -> None:
        await asyncio.to_thread(self.save, records)

    async def asearch(
        self,
        query_embedding: list[float],
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        metadata_filter: dict[str, Any] | None = None,
        limit: int = 10,
        min_score: float = 0.0,
    ) -> list[tuple[MemoryRecord, float]]:
        return await asyncio.to_thread(
            self.search,
            query_embedding,
            scope_prefix=scope_prefix,
            categories=categories,
            metadata_filter=metadata_filter,
            limit=limit,
            min_score=min_score,
        )

    async def adelete(
        self,
        scope_prefix: str | None = None,
        categories: list[str] | None = None,
        record_ids: list[str] | None = None,
        older_than: datetime | None = None,
        metadata_filter: dict[str, Any] | None = None,
    ) -> int:
        return await asyncio.to_thread(
            self.delete,
            scope_prefix=scope_prefix,
            categories=categories,
            record_ids=record_ids,
            older_than=older_than,
            metadata_filter=metadata_filter,
        )


def export_to_lancedb(path: str | Path | None = None) -> int:
    """Bring LanceDB in ``path`` up to date with the Rust store now; returns how many records it holds.

    Opening a ``LanceDBStorage`` is what does it (the fork's patch calls
    ``crewai_rust.memory_sync.pull_into_lancedb``): this is for scripts that
    copy or inspect the LanceDB files by themselves.
    """
    from crewai.memory.storage.lancedb_storage import LanceDBStorage

    return LanceDBStorage(path=path if path is not None else default_storage_path()).count()


def storage_for_spec(spec: str) -> StorageBackend | None:
    """The storage ``Memory`` should use for a string ``storage`` spec, or None for upstream's.

    Called by the fork's patch to ``Memory`` after any factory registered with
    ``set_memory_storage_factory`` declined the spec and before the built-in
    LanceDB selection, for the default (``"lancedb"``) and path specs only.
    With the memory component on Rust, the spec's directory gets a
    ``RustMemoryStorage``; otherwise None, and upstream's LanceDB is used.
    """
    if not use_rust("memory"):
        return None
    directory = default_storage_path() if spec == "lancedb" else Path(spec)
    try:
        return RustMemoryStorage(directory)
    except sqlite3.DatabaseError as exc:
        # Upstream's outcome for a broken store: the crew runs and the error is
        # logged. The file is left as it is; LanceDB keeps this Memory's records
        # (a RustMemoryStorage takes them in once the file is readable again).
        logger.error(
            "crewai_rust: the memory store %s cannot be opened (%s); this Memory uses "
            "upstream's LanceDB storage in %s instead",
            directory / DB_FILENAME, exc, directory,
        )
        return None


def batch_dedup(items: Sequence[Any], threshold: float) -> int:
    """Upstream's intra-batch dedup (``EncodingFlow.intra_batch_dedup``) on the Rust kernel.

    ``items`` are the flow's ``ItemState`` objects; each one found to be a
    near-duplicate (cosine ``>= threshold``) of an earlier kept item gets
    ``dropped = True``. Items already dropped, or without an embedding, are
    neither compared nor dropped, as upstream. Returns how many were dropped.
    Requires the native module.
    """
    vectors = [item.embedding if item.embedding and not item.dropped else [] for item in items]
    flags = _native().batch_dedup_flags(vectors, threshold)
    dropped = 0
    for item, flag in zip(items, flags):
        if flag:
            item.dropped = True
            dropped += 1
    return dropped


_memory_on_rust = decider("memory")


def intra_batch_dedup(items: Sequence[Any], threshold: float) -> int | None:
    """The encoding flow's hook: :func:`batch_dedup` when the memory component
    is on Rust, else None (upstream's loop runs)."""
    if not _memory_on_rust():
        return None
    return batch_dedup(items, threshold)
