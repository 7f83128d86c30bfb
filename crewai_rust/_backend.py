"""Backend selection: which components run on Rust and why.

Settings come from the environment (read at every resolution, so a test or a
launcher may change them at any time) and from :func:`configure_rust_components`
(runtime overrides, which win over the per-component variables). The master
switch ``CREWAI_RUST`` wins over everything: ``0`` is upstream Python everywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, Literal

logger = logging.getLogger("crewai_rust")

COMPONENTS: tuple[str, ...] = ("memory", "tools", "tasks", "serialization", "database")
MASTER_VARIABLE = "CREWAI_RUST"

# Components whose Rust implementation has landed. A component is added here
# by the issue that implements it, together with its hook patch and its bench
# workload.
IMPLEMENTED_COMPONENTS: frozenset[str] = frozenset({"database", "memory", "serialization", "tasks", "tools"})
# Components whose Rust side opens SQLite files that Python's sqlite3 may open too.
SQLITE_COMPONENTS: frozenset[str] = frozenset({"database", "memory"})

Setting = Literal["auto", "on", "off"]
Backend = Literal["rust", "python"]

_ACCEPTED = {
    "": "auto", "auto": "auto",
    "1": "on", "true": "on", "on": "on", "yes": "on",
    "0": "off", "false": "off", "off": "off", "no": "off",
}
ACCEPTED_VALUES = "auto, 1, 0 (also true/false, on/off, yes/no)"


class ConfigurationError(ValueError):
    """A backend switch has a value crewai_rust does not accept."""


class NativeModuleMissingError(RuntimeError):
    """Rust was required (``=1``) but the native module could not be imported."""


class ComponentNotImplementedError(RuntimeError):
    """A component was required on Rust (``CREWAI_RUST_<NAME>=1``) but has no Rust implementation yet."""


class SQLiteLibraryMismatchError(RuntimeError):
    """A SQLite component was required on Rust, but the native module and Python's sqlite3
    load different SQLite libraries (which would lose writes to a file both open)."""


def component_variable(component: str) -> str:
    return f"{MASTER_VARIABLE}_{component.upper()}"


_VARIABLES: dict[str, str] = {component: component_variable(component) for component in COMPONENTS}


def parse_setting(variable: str, raw: object) -> Setting:
    """Normalise a switch value; ``variable`` names the switch in the error."""
    if isinstance(raw, bool):
        return "on" if raw else "off"
    value = _ACCEPTED.get(str(raw).strip().lower()) if isinstance(raw, (str, int)) else None
    if value is None:
        raise ConfigurationError(f"{variable}={raw!r} is not valid; accepted values: {ACCEPTED_VALUES}")
    return value  # type: ignore[return-value]


# --------------------------------------------------------------------------- native module

_native_module: ModuleType | None = None
_native_error: str | None = None
_native_loaded = False
_native_lock = threading.Lock()


def load_native() -> ModuleType | None:
    """Import ``crewai_rust._native`` once; on failure log one line and return None."""
    global _native_module, _native_error, _native_loaded
    if _native_loaded:  # every store operation asks; only the first import needs the lock
        return _native_module
    with _native_lock:
        if not _native_loaded:
            try:
                from crewai_rust import _native

                _native_module = _native
            except ImportError as exc:
                _native_error = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "crewai_rust: native module unavailable (%s); every component uses upstream "
                    "crewai's Python code", _native_error,
                )
            _native_loaded = True
    return _native_module


def native_import_error() -> str | None:
    load_native()
    return _native_error


# --------------------------------------------------------------------------- resolution

_overrides: dict[str, Setting] = {}
_overrides_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ComponentStatus:
    """How one component is resolved right now."""

    component: str
    requested: Setting
    source: str
    backend: Backend
    reason: str


def master_setting() -> Setting:
    return parse_setting(MASTER_VARIABLE, os.environ.get(MASTER_VARIABLE, "auto"))


def _component_setting(component: str) -> tuple[Setting, str]:
    with _overrides_lock:
        override = _overrides.get(component)
    if override is not None:
        return override, "configure_rust_components()"
    variable = component_variable(component)
    raw = os.environ.get(variable)
    if raw is None:
        return "auto", "default"
    return parse_setting(variable, raw), f"{variable}={raw}"


def resolve(component: str) -> ComponentStatus:
    """Decide the backend of ``component``; raise where a required Rust part is missing."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; components: {', '.join(COMPONENTS)}")
    master = master_setting()
    setting, source = _component_setting(component)
    if master == "off":
        return ComponentStatus(component, setting, source, "python", f"disabled by {MASTER_VARIABLE}=0")
    if setting == "off":
        return ComponentStatus(component, setting, source, "python", f"disabled by {source}")
    native = load_native()
    if native is None:
        if master == "on" or setting == "on":
            who = f"{MASTER_VARIABLE}=1" if master == "on" else source
            raise NativeModuleMissingError(
                f"{who} requires the native module crewai_rust._native, which failed to import: "
                f"{_native_error}"
            )
        return ComponentStatus(component, setting, source, "python", f"native module missing ({_native_error})")
    if component in SQLITE_COMPONENTS and not sqlite_shared_with_python():
        why = (
            f"Python's sqlite3 loads another SQLite library ({_python_sqlite_description()}) than the "
            f"native module (SQLite {native.sqlite_version()}); a file opened through both in one "
            "process could lose committed writes"
        )
        if master == "on" or setting == "on":
            who = f"{MASTER_VARIABLE}=1" if master == "on" else source
            raise SQLiteLibraryMismatchError(f"{who} requires the Rust {component} component, but {why}")
        return ComponentStatus(component, setting, source, "python", why)
    if component not in IMPLEMENTED_COMPONENTS:
        if setting == "on":
            raise ComponentNotImplementedError(
                f"{source} requires the Rust {component} component, which this build does not "
                "implement yet; use auto or 0"
            )
        return ComponentStatus(component, setting, source, "python", "no Rust implementation yet")
    why = "enabled by default" if setting == "auto" else f"enabled by {source}"
    return ComponentStatus(component, setting, source, "rust", why)


@functools.cache
def sqlite_shared_with_python() -> bool:
    """True when the native module and Python's ``sqlite3`` run one and the same SQLite library.

    SQLite tracks the POSIX locks of a process per library copy: with two
    copies, closing a file through one drops the other's locks and lets it
    delete a WAL still in use. The native module links the system libsqlite3,
    which is what ``_sqlite3`` loads on most Pythons; this compares the address
    of ``sqlite3_libversion`` as each side resolves it.
    """
    native = load_native()
    if native is None:
        return False
    try:
        import _sqlite3
        import ctypes

        python_side = ctypes.cast(ctypes.CDLL(_sqlite3.__file__).sqlite3_libversion, ctypes.c_void_p).value
    except (ImportError, OSError, AttributeError):  # no sqlite3, or its SQLite's symbols are hidden
        return False
    return python_side == native.sqlite_library_address()


def _python_sqlite_description() -> str:
    try:
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    except ImportError:
        return "none: the sqlite3 module is missing"


def _environ_store_is_readable() -> bool:
    """Whether ``os.environ``'s backing dict can be read directly (CPython's
    ``_Environ`` keeps values in ``_data`` under ``encodekey(key)``): checked
    once, on a probe variable set and unset through the public API."""
    data = getattr(os.environ, "_data", None)
    encodekey = getattr(os.environ, "encodekey", None)
    if not isinstance(data, dict) or encodekey is None:
        return False
    probe = f"CREWAI_RUST_PROBE_{os.getpid()}"
    try:
        os.environ[probe] = "1"
        seen_set = data.get(encodekey(probe)) is not None
        del os.environ[probe]
        return seen_set and data.get(encodekey(probe)) is None
    except Exception:  # noqa: BLE001 - any surprise means: use the public API
        os.environ.pop(probe, None)
        return False


_DIRECT_ENVIRON = _environ_store_is_readable()


def _switch_reader(variable: str) -> Callable[[], object]:
    """A live read of one environment variable, for the per-call decision.

    ``os.environ.get`` costs most of a microsecond (it encodes the key and
    decodes the value), paid on every serialization call; where the check
    above passed, the backing dict is read instead (about 10x cheaper; the
    value is compared, not decoded). Otherwise the public API.
    """
    if not _DIRECT_ENVIRON:
        return functools.partial(os.environ.get, variable)
    return functools.partial(os.environ._data.get, os.environ.encodekey(variable))  # type: ignore[attr-defined]


def _decider(component: str) -> Callable[[], bool]:
    """``use_rust(component)`` as a closure: the answer is kept until one of its
    inputs changes (the two variables or a runtime override)."""
    read_master = _switch_reader(MASTER_VARIABLE)
    read_component = _switch_reader(_VARIABLES[component])
    overrides = _overrides
    decided: list[Any] = [None, False]

    def decide() -> bool:
        inputs = (read_master(), read_component(), overrides.get(component))
        if inputs != decided[0]:
            on_rust = resolve(component).backend == "rust"  # raises like resolve(), every time
            decided[:] = [inputs, on_rust]
        return decided[1]

    return decide


_deciders: dict[str, Callable[[], bool]] = {component: _decider(component) for component in COMPONENTS}


def use_rust(component: str) -> bool:
    """The question every hook asks: run this component on Rust now?

    Hooks ask on every call (a serialization call costs a few microseconds),
    so the answer is kept until one of its inputs changes. Hot callers hold
    :func:`decider` instead. Raises like :func:`resolve`, every time.
    """
    decide = _deciders.get(component)
    if decide is None:
        return resolve(component).backend == "rust"  # raises: unknown component
    return decide()


def decider(component: str) -> Callable[[], bool]:
    """The zero-argument form of ``use_rust(component)``, for hooks called per value."""
    return _deciders[component]


def configure_rust_components(
    *,
    memory: bool | str | None = None,
    tools: bool | str | None = None,
    tasks: bool | str | None = None,
    serialization: bool | str | None = None,
    database: bool | str | None = None,
) -> dict[str, ComponentStatus]:
    """Switch components between Rust and upstream Python at runtime.

    Each argument is ``True``/``"1"`` (require Rust), ``False``/``"0"`` (upstream
    Python), ``"auto"`` (Rust where available), or ``None`` to leave that
    component as it is. A runtime setting wins over its ``CREWAI_RUST_<NAME>``
    variable; ``CREWAI_RUST=0`` still wins over both.

    Existing objects: a component that decides at construction keeps its
    choice (a ``Memory`` built before the call keeps its storage), and an
    operation already running finishes on the backend it started with. The
    database component decides per operation, since crewai's SQLite stores
    open their connection for each call: existing stores switch at their next
    call, on the same files. Use :func:`clear_rust_component_overrides` to go
    back to the environment.

    Returns the resulting status of every component.
    """
    requested = {
        "memory": memory, "tools": tools, "tasks": tasks,
        "serialization": serialization, "database": database,
    }
    parsed = {
        name: parse_setting(f"configure_rust_components({name}=...)", value)
        for name, value in requested.items()
        if value is not None
    }
    with _overrides_lock:
        previous = dict(_overrides)
        _overrides.update(parsed)
    try:
        return {name: resolve(name) for name in COMPONENTS}
    except Exception:
        with _overrides_lock:
            _overrides.clear()
            _overrides.update(previous)
        raise


@contextlib.contextmanager
def forced_backend(component: str, backend: Backend) -> Iterator[None]:
    """Run a block with one component forced to a backend (the bench's A/B switch).

    Cheaper than :func:`configure_rust_components`, which resolves every
    component; not meant for applications.
    """
    setting: Setting = "on" if backend == "rust" else "off"
    with _overrides_lock:
        previous = _overrides.get(component)
        _overrides[component] = setting
    try:
        yield
    finally:
        with _overrides_lock:
            if previous is None:
                _overrides.pop(component, None)
            else:
                _overrides[component] = previous


@contextlib.contextmanager
def every_component_forced(backend: Backend) -> Iterator[None]:
    """:func:`forced_backend` for every implemented component: upstream's whole
    code path (``"python"``) or the fork's (``"rust"``), for end-to-end workloads."""
    with contextlib.ExitStack() as stack:
        for component in sorted(IMPLEMENTED_COMPONENTS):
            stack.enter_context(forced_backend(component, backend))
        yield


def clear_rust_component_overrides() -> None:
    """Forget every :func:`configure_rust_components` setting; the environment decides again."""
    with _overrides_lock:
        _overrides.clear()


def component_status() -> dict[str, ComponentStatus]:
    """The status of every component (raises like :func:`resolve` where Rust is required but missing)."""
    return {name: resolve(name) for name in COMPONENTS}
