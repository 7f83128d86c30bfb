"""Type stub of the native module built from rust/ (see rust/src/python.rs)."""

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

class RustPanicError(RuntimeError):
    """A panic inside the native code, raised instead of aborting."""

def build_info() -> dict[str, Any]:
    """version, git_sha, profile, target, features of the compiled crate."""

def batch_dedup_flags(vectors: list[list[float]], threshold: float) -> list[bool]:
    """Upstream's intra-batch dedup rule: True for each item dropped as a near-duplicate."""

def _panic_for_tests(message: str, release_gil: bool = False) -> None:
    """Panics on purpose (tests of the panic guard)."""

def sqlite_version() -> str:
    """Version of the SQLite library the native module runs: the system libsqlite3, which
    Python's sqlite3 module loads too. Below 3.45 the pool defines ``jsonb()`` as ``json()``."""

def sqlite_library_address() -> int:
    """Address of ``sqlite3_libversion`` in this process, to compare with the one ``_sqlite3`` uses."""

class SqlitePool:
    """Pooled connections to one SQLite file (WAL, busy timeout, statement cache)."""

    def __init__(self, path: str | Path, busy_timeout: float = 5.0, max_idle: int = 8) -> None: ...
    def connect(self, busy_timeout: float = 5.0) -> SqliteConnection:
        """Check out a connection; it returns to the pool on close()."""
    def close(self) -> None:
        """Close every pooled connection; later connects raise sqlite3.ProgrammingError."""
    @property
    def path(self) -> Path: ...
    @property
    def closed(self) -> bool: ...

class SqliteConnection:
    """One pooled connection with sqlite3's implicit-transaction rules; raises sqlite3's exceptions."""

    def execute(
        self, sql: str, parameters: Sequence[Any] | None = None
    ) -> tuple[list[str], SqliteRows, int, int]:
        """Run one statement: (column names, rows, rowcount, lastrowid)."""
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None:
        """Roll back what is uncommitted and return the connection to its pool."""
    @property
    def in_transaction(self) -> bool: ...
    @property
    def closed(self) -> bool: ...

class SqliteRows:
    """A statement's rows, read with the GIL released, turned into Python objects on demand."""

    def __len__(self) -> int: ...
    def tuples(self, start: int = 0, stop: int | None = None) -> list[tuple[Any, ...]]: ...
    def records(
        self, json_columns: list[str], decode: Callable[[Any], Any], start: int = 0
    ) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column name; ``json_columns`` through ``decode``."""

class NotHandledNatively(Exception):
    """Input the native serializer leaves to the upstream Python code."""

def json_dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    """json.dumps(obj, default=default), byte for byte."""

def json_loads(text: str) -> Any:
    """json.loads(text); NotHandledNatively for what CPython must decode or word."""

class JsonDecoder:
    """json.loads(document): native for a str it can decode, else ``fallback(document)``."""

    def __init__(self, fallback: Callable[[Any], Any]) -> None: ...
    def __call__(self, document: Any) -> Any: ...

def to_serializable(
    obj: Any,
    exclude: Collection[Any] | None = None,
    max_depth: int | None = None,
    fallback: Callable[[Any, Collection[Any] | None, int], Any] | None = None,
) -> Any:
    """crewai.utilities.serialization.to_serializable, value for value (max_depth None: 5).

    What it leaves to upstream (nesting past its limit, a max_depth beyond i64)
    goes to fallback(obj, exclude, max_depth), or raises NotHandledNatively.
    """

class AgentMessage:
    """An LLM message held in Rust (crewai's LLMMessage dict as a typed value)."""

    def __init__(
        self,
        role: str,
        content: str | list[dict[str, Any]] | None = None,
        *,
        tool_call_id: str | None = None,
        name: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        raw_tool_call_parts: list[Any] | None = None,
    ) -> None: ...
    @staticmethod
    def from_dict(message: dict[str, Any]) -> AgentMessage: ...
    @staticmethod
    def from_json(text: str) -> AgentMessage: ...
    def to_dict(self) -> dict[str, Any]: ...
    def to_json(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str | list[dict[str, Any]] | None: ...
    @property
    def tool_call_id(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def tool_calls(self) -> list[dict[str, Any]] | None: ...
    @property
    def raw_tool_call_parts(self) -> list[Any] | None: ...

class EmbeddingDimensionError(ValueError):
    """The store holds vectors of another dimension; args are (stored_dim, new_dim)."""

class RecordLike(Protocol):
    """What the store reads of a record to save (crewai_rust.memory.StoredRecord, or a MemoryRow)."""

    id: str
    content: str
    scope: str
    categories_str: str
    metadata_str: str
    importance: float
    created_at: str
    created_key: int
    last_accessed: str
    source: str
    private: bool
    vector: bytes | None

class MemoryRow:
    """A stored record: LanceDB's row layout, the vector as float32 little-endian bytes."""

    @property
    def id(self) -> str: ...
    @property
    def content(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def categories_str(self) -> str: ...
    @property
    def metadata_str(self) -> str: ...
    @property
    def importance(self) -> float: ...
    @property
    def created_at(self) -> str: ...
    @property
    def created_key(self) -> int: ...
    @property
    def last_accessed(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def private(self) -> bool: ...
    @property
    def vector(self) -> bytes: ...

class MemoryFilter:
    """Which records a call touches: one constructor per scope match."""

    @staticmethod
    def any(*, categories: list[str] = ..., metadata_json: str | None = None,
            created_before: int | None = None) -> MemoryFilter: ...
    @staticmethod
    def prefix(prefix: str, *, categories: list[str] = ..., metadata_json: str | None = None,
               created_before: int | None = None) -> MemoryFilter: ...
    @staticmethod
    def prefix_or_root(prefix: str, *, created_before: int | None = None) -> MemoryFilter: ...
    @staticmethod
    def range(low: str, high: str) -> MemoryFilter: ...

class ScopeSummary:
    """What get_scope_info needs of the scopes under a prefix."""

    @property
    def record_count(self) -> int: ...
    @property
    def categories(self) -> list[str]: ...
    @property
    def oldest(self) -> str | None: ...
    @property
    def newest(self) -> str | None: ...
    @property
    def child_scopes(self) -> list[str]: ...

class MemoryStore:
    """The native memory store (crewai_rust.memory.RustMemoryStorage owns the public API)."""

    def __init__(self, path: str, busy_timeout: float = 30.0, approximate_from_rows: int | None = None) -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def vector_dim(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def save(self, records: list[RecordLike]) -> None: ...
    def update(self, record: RecordLike) -> None: ...
    def ensure_dim(self, dim: int) -> None: ...
    def touch(self, ids: list[str], last_accessed: str) -> None: ...
    def get(self, id: str) -> MemoryRow | None: ...
    def count(self) -> int: ...
    def search(self, query: bytes, filter: MemoryFilter, limit: int, min_score: float) -> list[tuple[MemoryRow, float]]: ...
    def list(self, filter: MemoryFilter, limit: int, offset: int) -> list[MemoryRow]: ...
    def delete_ids(self, ids: list[str]) -> int: ...
    def delete_matching(self, filter: MemoryFilter) -> int: ...
    def reset_all(self) -> None: ...
    def scope_summary(self, prefix: str, child_prefix: str) -> ScopeSummary: ...
    def child_scopes(self, prefix: str, exclude: str) -> list[str]: ...
    def category_counts(self, prefix: str) -> dict[str, int]: ...
    def build_index(self) -> bool: ...
    def index_status(self) -> dict[str, Any]: ...  # state, source, measured_recall, verified_searches
    def close(self) -> None: ...

# --- tasks

class UnsupportedFlowGraph(ValueError):
    """A flow definition holds a condition the native graph does not compile (upstream's walk reads it)."""

class FlowGraph:
    """A Flow definition's listeners and routers, indexed by the events their conditions name."""

    def __init__(self, definition: Any) -> None: ...
    def find_triggered(
        self, trigger: str, router_only: bool, pending: dict[str, set[str]], fired_once: set[str]
    ) -> list[str]: ...

class TaskPoolStats:
    """Statistics of a TaskPool."""

    @property
    def workers(self) -> int: ...
    @property
    def peak_workers(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def queued(self) -> int: ...

class TaskPool:
    """Worker threads, created natively, that call queued Python callables (at most max_workers at once)."""

    def __init__(
        self, max_workers: int, *, stack_size: int = ..., idle_seconds: float = ..., name: str = ...
    ) -> None: ...
    @property
    def max_workers(self) -> int: ...
    def submit(self, job: Callable[[], object], *, nested: bool = False) -> None: ...
    def shutdown(self) -> list[Callable[[], object]]: ...
    def wait_idle(self, timeout: float | None = None) -> bool: ...
    def stats(self) -> TaskPoolStats: ...
