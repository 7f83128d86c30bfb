"""Type stub of the native module built from rust/ (see rust/src/python.rs)."""

from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

class RustPanicError(RuntimeError):
    """A panic inside the native code, raised instead of aborting."""

def build_info() -> dict[str, Any]:
    """version, git_sha, profile, target, features of the compiled crate."""

def batch_dedup_flags(vectors: list[list[float]], threshold: float) -> list[bool]:
    """Upstream's intra-batch dedup rule: True for each item dropped as a near-duplicate."""

def _panic_for_tests(message: str, release_gil: bool = False) -> None:
    """Panics on purpose (tests of the panic guard)."""

def sqlite_version() -> str:
    """Version of the SQLite library bundled into the native module (>= 3.45, with jsonb)."""

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
    ) -> tuple[list[str], list[tuple[Any, ...]], int, int]:
        """Run one statement: (column names, rows, rowcount, lastrowid)."""
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None:
        """Roll back what is uncommitted and return the connection to its pool."""
    @property
    def in_transaction(self) -> bool: ...
    @property
    def closed(self) -> bool: ...

class NotHandledNatively(Exception):
    """Input the native serializer leaves to the upstream Python code."""

def json_dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    """json.dumps(obj, default=default), byte for byte."""

def json_loads(text: str) -> Any:
    """json.loads(text); NotHandledNatively for what CPython must decode or word."""

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
