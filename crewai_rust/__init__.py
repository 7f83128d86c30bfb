"""crewai_rust: the Rust core of this crewai fork, with upstream's Python code as fallback.

The components with a Rust implementation (today: memory, serialization,
database, tasks; tools run on upstream's code until theirs lands) run on
Rust when the native module ``crewai_rust._native`` imports and the component
is switched on (the default), and on upstream crewai's own code otherwise.
``python -m crewai_rust status`` shows what is in force and why.
"""

from __future__ import annotations

from typing import Any

from crewai_rust._backend import (
    ACCEPTED_VALUES,
    COMPONENTS,
    IMPLEMENTED_COMPONENTS,
    ComponentNotImplementedError,
    ComponentStatus,
    ConfigurationError,
    NativeModuleMissingError,
    SQLiteLibraryMismatchError,
    clear_rust_component_overrides,
    component_status,
    configure_rust_components,
    load_native,
    native_import_error,
    use_rust,
)

_native = load_native()

#: True when the native module imported; components may still be switched off.
RUST_AVAILABLE: bool = _native is not None

if _native is not None:
    RustPanicError: type[RuntimeError] = _native.RustPanicError
else:

    class RustPanicError(RuntimeError):  # type: ignore[no-redef]
        """A panic inside the native code (never raised without the native module)."""


def build_info() -> dict[str, Any] | None:
    """Crate version, git commit, build profile, target and features of the native module, or None."""
    return dict(_native.build_info()) if _native is not None else None


__all__ = [
    "ACCEPTED_VALUES",
    "COMPONENTS",
    "IMPLEMENTED_COMPONENTS",
    "RUST_AVAILABLE",
    "ComponentNotImplementedError",
    "ComponentStatus",
    "ConfigurationError",
    "NativeModuleMissingError",
    "RustPanicError",
    "SQLiteLibraryMismatchError",
    "build_info",
    "clear_rust_component_overrides",
    "component_status",
    "configure_rust_components",
    "fork_version",
    "native_import_error",
    "use_rust",
]


def fork_version(upstream_version: str) -> str:
    """The installed distribution's version (``<upstream>+rust.N``) for ``crewai.__version__``.

    ``importlib.metadata.version("crewai")`` (what crewai's CLI and checkpoints
    report) and ``crewai.__version__`` then agree. Falls back to
    ``upstream_version`` when the installed metadata is not this fork's build
    of that release (a source checkout, say).
    """
    import importlib.metadata

    try:
        installed = importlib.metadata.version("crewai")
    except importlib.metadata.PackageNotFoundError:
        return upstream_version
    return installed if installed.startswith(f"{upstream_version}+rust.") else upstream_version
