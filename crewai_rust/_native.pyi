"""Type stub of the native module built from rust/ (see rust/src/python.rs)."""

from typing import Any

class RustPanicError(RuntimeError):
    """A panic inside the native code, raised instead of aborting."""

def build_info() -> dict[str, Any]:
    """version, git_sha, profile, target, features of the compiled crate."""

def batch_dedup_flags(vectors: list[list[float]], threshold: float) -> list[bool]:
    """Upstream's intra-batch dedup rule: True for each item dropped as a near-duplicate."""

def _panic_for_tests(message: str, release_gil: bool = False) -> None:
    """Panics on purpose (tests of the panic guard)."""
