"""Database component: pooled Rust SQLite connections under crewai's SQLite stores.

Upstream's three SQLite users (kickoff task outputs, flow persistence, the
checkpoint provider) open a ``sqlite3`` connection per call, commit and close
it. The fork's patches route those ``sqlite3.connect`` / ``aiosqlite.connect``
calls through :func:`connect` / :func:`aconnect`, which hand out connections
from one Rust pool per database file (rusqlite on the system libsqlite3, the
library ``sqlite3`` itself loads, so one process has one SQLite and one lock
table per file; WAL, busy timeout, prepared-statement cache, the GIL released
during I/O; ``jsonb()`` defined as ``json()`` where SQLite predates 3.45).

The objects returned behave like the subset of ``sqlite3.Connection`` and
``sqlite3.Cursor`` those modules use, with ``sqlite3``'s transaction rules
(an implicit ``BEGIN`` before INSERT/UPDATE/DELETE/REPLACE, ``with conn:``
commits or rolls back, ``close()`` rolls back what is uncommitted) and
``sqlite3``'s exception types and SQLite's messages, so upstream's own error
handling (``DatabaseOperationError`` and friends) runs unchanged.

Connections are pooled with ``PRAGMA synchronous=NORMAL`` in WAL mode: a commit
survives a crash of the process; an operating-system crash or power loss may
lose the last commits, never the file's consistency. The files and schemas
are upstream's, so either backend reads what the other wrote.

Single-transaction writes skip upstream's store lock on the Rust backend (see
:func:`write_lock`); schema setup keeps it.

Falls back to ``sqlite3.connect`` (upstream's path) when the database
component resolves to Python, for ``:memory:``, ``file:`` URIs and any extra
``sqlite3.connect`` argument, and when ``sqlite3.connect`` itself has been
replaced (instrumentation or fault injection must see every connection).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from crewai_rust._backend import load_native, use_rust

if TYPE_CHECKING:
    from typing_extensions import Self

_SQLITE3_CONNECT = sqlite3.connect
try:
    import aiosqlite

    _AIOSQLITE_CONNECT = aiosqlite.connect
except ImportError:  # a crewai dependency; absent only outside a crewai install
    _AIOSQLITE_CONNECT = None
_DEFAULT_TIMEOUT = 5.0  # sqlite3.connect's default busy timeout

_pools: dict[str, Any] = {}
_pools_lock = threading.Lock()


def _pool_key(database: object) -> str | None:
    """The pool a ``sqlite3.connect`` target maps to, or None when it must not be pooled."""
    if not isinstance(database, (str, os.PathLike)):
        return None
    path = os.fspath(database)
    if isinstance(path, bytes) or path in ("", ":memory:") or path.startswith("file:"):
        return None
    # abspath, not realpath: no syscalls on the hot path. Two spellings of one
    # file get two pools, which SQLite's own locking keeps consistent.
    return os.path.abspath(path)


def _pool_for(key: str) -> Any:
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            native = load_native()
            assert native is not None  # use_rust("database") was checked by the caller
            pool = native.SqlitePool(key, _DEFAULT_TIMEOUT)
            _pools[key] = pool
        return pool


def close_pools(database: str | os.PathLike[str] | None = None) -> None:
    """Close the pooled connections of one database file, or of all of them.

    The next :func:`connect` to that file opens a fresh pool. Runs at
    interpreter exit; call it before removing a database file on platforms
    that refuse to delete open files.
    """
    with _pools_lock:
        if database is None:
            pools = list(_pools.values())
            _pools.clear()
        else:
            key = _pool_key(database)
            pools = [_pools.pop(key)] if key in _pools else []
    for pool in pools:
        pool.close()


atexit.register(close_pools)


def connect(database: str | os.PathLike[str], timeout: float = _DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
    """``sqlite3.connect`` for crewai's stores: a pooled Rust connection where possible.

    Returns a :class:`Connection`, or whatever ``sqlite3.connect`` returns
    when the call falls back to it (see the module docstring for when).
    """
    key = _pool_key(database)
    if sqlite3.connect is not _SQLITE3_CONNECT or kwargs or key is None or not use_rust("database"):
        return sqlite3.connect(database, timeout=timeout, **kwargs)
    return Connection(_pool_for(key).connect(float(timeout)))


def write_lock(lock: Callable[[str], AbstractContextManager[Any]], name: str) -> AbstractContextManager[Any]:
    """The lock around a store write that is a single SQLite transaction.

    Upstream takes ``lock`` (``crewai_core.lock_store.lock``: a file lock, or
    Redis) around every write. On the Rust backend a write that is one
    transaction needs no lock of its own: SQLite's write lock already
    serialises it across threads and processes (the busy timeout waits for
    it), and the file lock costs more than the write. Multi-step work (schema
    creation and migration) keeps upstream's lock in every backend.
    """
    if use_rust("database"):
        return contextlib.nullcontext()
    return lock(name)


# SQLite 3.45 added JSONB. This process's SQLite (the native module's and
# sqlite3's: one library) reads only text JSON below it, and says only
# "malformed JSON" when it meets a JSONB value, such as a checkpoint written
# where SQLite is newer or by an earlier build of this fork (it bundled SQLite).
_JSONB_SQLITE = (3, 45)
_JSONB_UNREADABLE = (
    f"malformed JSON (if the value is a JSONB checkpoint, it was written by SQLite 3.45 or newer, "
    f"or by an earlier crewai_rust build, which bundled SQLite; this SQLite {sqlite3.sqlite_version} "
    "reads only text JSON: resume it where SQLite is 3.45 or newer, or upgrade the system libsqlite3)"
)


class Cursor:
    """The part of ``sqlite3.Cursor`` crewai's stores use."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description: tuple[tuple[str, None, None, None, None, None, None], ...] | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._result: Any = None  # the native rows, read when the statement ran
        self._next = 0  # the first row not fetched yet

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        try:
            columns, result, rowcount, lastrowid = self.connection._native.execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            if str(exc) == "malformed JSON" and sqlite3.sqlite_version_info < _JSONB_SQLITE:
                raise sqlite3.OperationalError(_JSONB_UNREADABLE) from exc
            raise
        self.description = tuple((name, None, None, None, None, None, None) for name in columns) or None
        # Rows become tuples (or dicts, by fetchall_records) as they are fetched,
        # so a cell sqlite3 cannot return raises at the row sqlite3 raises at.
        self._result, self._next = result, 0
        self.rowcount, self.lastrowid = rowcount, lastrowid
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterator[Sequence[Any]]) -> Cursor:
        total = 0
        for parameters in seq_of_parameters:
            self.execute(sql, parameters)
            total += max(self.rowcount, 0)
        self.rowcount = total
        self.close()
        return self

    def _take(self, count: int | None) -> list[tuple[Any, ...]]:
        if self._result is None:
            return []
        rows = self._result.tuples(self._next, None if count is None else self._next + count)
        self._next += len(rows)
        return rows

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._take(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        return self._take(self.arraysize if size is None else size)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._take(None)

    def fetchall_records(self, json_columns: Collection[str] = ()) -> list[dict[str, Any]]:
        """The remaining rows as dicts keyed by column name, in column order, with the
        values of ``json_columns`` decoded as ``json.loads`` would (on the serialization
        component's backend): what a store's loop over ``fetchall()`` builds, made natively."""
        from crewai_rust.serialization import decoder

        if self._result is None:
            return []
        records = self._result.records(list(json_columns), decoder(), self._next)
        self._next = len(self._result)
        return records

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self._result, self._next = None, 0


def fetch_records(cursor: Any, json_columns: Collection[str] = ()) -> list[dict[str, Any]] | None:
    """``cursor``'s remaining rows as dicts (see :meth:`Cursor.fetchall_records`) when it is
    the fork's cursor; None for a ``sqlite3`` cursor, whose caller builds the dicts itself."""
    if isinstance(cursor, Cursor):
        return cursor.fetchall_records(json_columns)
    return None


class Connection:
    """The part of ``sqlite3.Connection`` crewai's stores use, over one pooled Rust connection."""

    def __init__(self, native: Any) -> None:
        self._native = native

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Cursor:
        return Cursor(self).execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterator[Sequence[Any]]) -> Cursor:
        return Cursor(self).executemany(sql, seq_of_parameters)

    def commit(self) -> None:
        self._native.commit()

    def rollback(self) -> None:
        self._native.rollback()

    def close(self) -> None:
        """Roll back what is uncommitted and return the connection to its pool."""
        self._native.close()

    @property
    def in_transaction(self) -> bool:
        return bool(self._native.in_transaction)

    def __enter__(self) -> Self:
        if self._native.closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()
        return False


# --------------------------------------------------------------------------- asyncio


def aconnect(database: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``aiosqlite.connect`` for crewai's checkpoint provider: pooled where possible.

    Returns an async context manager; the blocking calls run in a worker
    thread (``asyncio.to_thread``) so the event loop never waits on I/O.
    """
    import aiosqlite

    key = _pool_key(database)
    if aiosqlite.connect is not _AIOSQLITE_CONNECT or kwargs or key is None or not use_rust("database"):
        return aiosqlite.connect(database, **kwargs)
    return AsyncConnection(key)


class AsyncCursor:
    def __init__(self, cursor: Cursor) -> None:
        self._cursor = cursor

    async def fetchone(self) -> tuple[Any, ...] | None:
        return self._cursor.fetchone()

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid


class AsyncConnection:
    """The part of ``aiosqlite.Connection`` the checkpoint provider uses."""

    def __init__(self, key: str) -> None:
        self._key = key
        self._connection: Connection | None = None

    async def __aenter__(self) -> Self:
        native = await asyncio.to_thread(lambda: _pool_for(self._key).connect(_DEFAULT_TIMEOUT))
        self._connection = Connection(native)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _conn(self) -> Connection:
        if self._connection is None:
            raise ValueError("Connection closed")
        return self._connection

    async def execute(self, sql: str, parameters: Sequence[Any] = ()) -> AsyncCursor:
        conn = self._conn()
        return AsyncCursor(await asyncio.to_thread(conn.execute, sql, parameters))

    async def commit(self) -> None:
        await asyncio.to_thread(self._conn().commit)

    async def rollback(self) -> None:
        await asyncio.to_thread(self._conn().rollback)

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await asyncio.to_thread(connection.close)
