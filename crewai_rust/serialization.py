"""Serialization component: crewai's JSON and ``to_serializable`` on a Rust encoder.

crewai turns the LLM message list into JSON-ready values twice per LLM call
for its events (``crewai.utilities.serialization.to_serializable``), writes
kickoff task outputs with ``json.dumps(..., cls=CrewJSONEncoder)``, flow
states with ``json.dumps(..., default=...)`` and every checkpoint with
``json.dumps``. The fork's patches send those calls here first.

The Rust side walks the Python objects directly (no intermediate dicts) and
gives **exactly** what the upstream call gives: the same text byte for byte
(``ensure_ascii``, ``NaN``/``Infinity``, ``float.__repr__`` digits, lone
surrogates as ``\\udXXX``), the same values, the same exceptions and messages
(``TypeError`` for an object ``default`` cannot handle, ``ValueError`` on a
circular reference). Input it does not reproduce itself (nesting deeper than
its limit, an invalid document whose ``JSONDecodeError`` CPython words, text
with lone surrogate escapes) is handed to the upstream Python code, which
then gives the result or the error. Every function here falls back to the
standard library or upstream crewai when the serialization component
resolves to Python (``CREWAI_RUST_SERIALIZATION=0``, ``CREWAI_RUST=0``, or no
native module).

When the fallback runs after the native encoder has started, a ``default``
hook or ``repr`` that already ran for part of the input runs again; both are
expected to be free of side effects, as ``json`` assumes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crewai_rust._backend import decider, load_native

if TYPE_CHECKING:
    from crewai.utilities.serialization import Serializable

# AgentMessage comes from the native module on first access (module __getattr__).
__all__ = ["AgentMessage", "decoder", "dumps", "loads", "serializer_override", "to_serializable"]  # noqa: F822

_JSONEncoder = json.JSONEncoder
_on_rust = decider("serialization")
_encoder_defaults: dict[type, tuple[Any, Callable[[Any], Any] | None]] = {}


def _plain_encoder_class(cls: type) -> bool:
    """True for a JSONEncoder subclass that customizes only ``default``.

    Those are the classes whose output the native encoder reproduces; one that
    overrides ``__init__``, ``encode``, ``iterencode`` or the separators goes
    to ``json.dumps``. Asked per call: class attributes can change.
    """
    return (
        isinstance(cls, type)
        and issubclass(cls, _JSONEncoder)
        and cls.__init__ is _JSONEncoder.__init__
        and cls.encode is _JSONEncoder.encode
        and cls.iterencode is _JSONEncoder.iterencode
        and cls.item_separator == _JSONEncoder.item_separator
        and cls.key_separator == _JSONEncoder.key_separator
    )


def _encoder_default(cls: type[json.JSONEncoder]) -> Callable[[Any], Any] | None:
    """The ``default`` hook ``json.dumps(..., cls=cls)`` would use (None: JSONEncoder's own).

    One encoder instance per class serves every call, as ``json.dumps`` keeps
    one for its own defaults: ``default`` is expected not to depend on state
    an earlier call left in the instance. Rebuilt when ``cls.default`` is
    replaced (``mock.patch.object`` in a test, say).
    """
    method = cls.default
    cached = _encoder_defaults.get(cls)
    if cached is None or cached[0] is not method:
        cached = (method, None if method is _JSONEncoder.default else cls().default)
        _encoder_defaults[cls] = cached
    return cached[1]


def dumps(obj: Any, *, cls: type[json.JSONEncoder] | None = None, default: Callable[[Any], Any] | None = None,
          **kwargs: Any) -> str:
    """``json.dumps(obj, cls=cls, default=default, **kwargs)``, on the Rust encoder when it can.

    The native encoder takes ``json.dumps``'s defaults plus ``default=`` and
    ``cls=`` (a ``JSONEncoder`` subclass that overrides only ``default``, such
    as crewai's ``CrewJSONEncoder``); any other keyword argument, or the
    component switched off, runs ``json.dumps`` itself.
    """
    if kwargs or not _on_rust() or (cls is not None and not _plain_encoder_class(cls)):
        return json.dumps(obj, cls=cls, default=default, **kwargs)
    native = load_native()
    hook = default if default is not None or cls is None else _encoder_default(cls)
    try:
        return native.json_dumps(obj, hook)
    except native.NotHandledNatively:
        return json.dumps(obj, cls=cls, default=default)


_native_decoder: Callable[[Any], Any] | None = None


def decoder() -> Callable[[Any], Any]:
    """``json.loads`` for the documents of one operation, backend decided now.

    On Rust it is the native decoder, which hands anything it does not decode
    itself (bytes, lone surrogates, an invalid document, whose error CPython
    words) to ``json.loads``; otherwise ``json.loads`` itself. A store that
    decodes many documents asks once and calls the result per document.
    """
    global _native_decoder
    if not _on_rust():
        return json.loads
    if _native_decoder is None:
        _native_decoder = load_native().JsonDecoder(json.loads)
    return _native_decoder


def loads(s: str | bytes | bytearray, **kwargs: Any) -> Any:
    """``json.loads(s, **kwargs)``, on the Rust decoder when there are no keyword arguments."""
    if kwargs:
        return json.loads(s, **kwargs)
    return decoder()(s)


def _upstream_to_serializable(obj: Any, exclude: set[str] | None, max_depth: int) -> Serializable:
    from crewai.utilities.serialization import to_serializable as upstream

    # A non-None _ancestors skips the fork's hook: this is upstream's own body.
    return upstream(obj, exclude=exclude, max_depth=max_depth, _current_depth=0, _ancestors=set())


_native_to_serializable: Callable[..., Serializable] | None = None


def serializer_override() -> Callable[..., Serializable] | None:
    """What the fork's ``to_serializable`` runs instead of its own body, or None.

    Asked on every top-level call, so the component switches take effect at
    the next call. The callable takes ``(obj, exclude, max_depth)``.
    """
    global _native_to_serializable
    if not _on_rust():
        return None
    if _native_to_serializable is None:
        _native_to_serializable = functools.partial(load_native().to_serializable, fallback=_upstream_to_serializable)
    return _native_to_serializable


def to_serializable(obj: Any, exclude: set[str] | None = None, max_depth: int = 5) -> Serializable:
    """crewai's ``to_serializable(obj, exclude, max_depth)``, on Rust when the component is on.

    Same result as upstream for every input: primitives as they are, UUIDs as
    ``str``, dates as ``isoformat()``, dataclasses, dicts (keys through str,
    other keys as ``key_<id>_<repr>``), lists, tuples and sets as lists,
    pydantic models through ``model_dump(mode="json")`` (then their
    ``__dict__``, then ``repr``), ``repr`` for the rest and past
    ``max_depth``, and ``<circular_ref:Type>`` for a container inside itself.
    """
    override = serializer_override()
    if override is not None:
        return override(obj, exclude, max_depth)
    return _upstream_to_serializable(obj, exclude, max_depth)


def __getattr__(name: str) -> Any:
    if name == "AgentMessage":
        from crewai_rust._backend import NativeModuleMissingError, native_import_error

        native = load_native()
        if native is None:
            raise NativeModuleMissingError(
                f"AgentMessage is Rust-backed and crewai_rust._native is not importable: {native_import_error()}"
            )
        return native.AgentMessage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
