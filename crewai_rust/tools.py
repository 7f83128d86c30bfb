"""Tools component: what crewai spends around an agent's tool calls.

With the tools component on (``CREWAI_RUST_TOOLS``), the fork's hooks send
these parts here:

* **Schemas once per model.** crewai describes a tool's argument model
  (``generate_model_description``: pydantic's JSON schema, then seven passes
  over it) every time it renders the tool: for every LLM call's tool list on
  the native path, for every ``ToolUsage`` (one per ReAct tool call, which
  renders *all* the agent's tools) and for every task's prompt.
  :func:`model_description` computes it once per model class and hands out
  copies; :func:`tool_description` does the same for the rendered ReAct
  block of a tool (its name, schema and description).
* **Deep schemas.** A model nested a few dozen levels deep makes pydantic's
  schema generation (and crewai's passes over it) recurse past Python's
  recursion limit: ``kickoff()`` raised ``RecursionError`` on the ReAct path,
  and the native path sent the tool with no parameters at all. Here a
  description that hits the limit is computed again on a thread with a
  large native stack and a high recursion limit; past even that it raises
  :class:`ToolSchemaError` naming the tool, never a silent empty schema.
* **Repeated definitions.** crewai inlines every ``$ref`` of a schema; a
  definition used twice by each of twelve nested levels becomes 4,096
  copies (megabytes sent to the LLM per tool). :func:`bounded_refs` keeps
  upstream's inlining while the inlined schema stays under
  :data:`MAX_INLINED_NODES` nodes, and otherwise keeps a ``$ref`` (with its
  ``$defs`` entry) for each definition used more than once, so the schema's
  size stays linear in its definition.
* **Tool selection.** ReAct's ``_select_tool`` sorts every tool by string
  similarity twice per call; :func:`select_tool` returns the tool whose
  name is exactly the one asked for first, which is the tool upstream's
  sort puts first, and leaves misses to upstream's fuzzy match.
* **Per-call lookups.** :func:`sanitized_name` keeps each tool name's
  sanitized form; :func:`argument_names` keeps a model's argument names
  (``ToolUsage`` built a whole JSON schema per call to read them);
  :class:`ToolListText` leaves ``ToolUsage``'s two lists of all the tools to
  their first read; :func:`signature_checked` inspects a tool function's
  signature once per function and schema rather than twice per task.
* **Tool calls on tool threads.** :class:`RustToolExecutor` runs a tool's
  body on a worker thread created natively with a large stack. Agents'
  calls go through :func:`tool_runner`: the tool's own exceptions come back
  unchanged (upstream's tool-error observation), while a ``BaseException``
  that is not an ``Exception`` or a call past ``CREWAI_RUST_TOOL_TIMEOUT``
  becomes a :class:`ToolExecutionError` the agent sees the same way.
* **MCP discovery.** :func:`model_from_json_schema` guards building an MCP
  tool's argument model from its input schema the same way.

Each hook returns None (or does nothing) when the component resolves to
upstream Python, and the patched function then runs upstream's body.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from crewai_rust._backend import decider

__all__ = [
    "MAX_INLINED_NODES", "MAX_SCHEMA_NESTING", "RustToolExecutor", "ToolExecutionError", "ToolListText",
    "ToolSchemaError",
    "agent_tool_executor", "argument_names", "async_tool_runner", "bounded_refs", "json_copy", "model_description",
    "model_from_json_schema", "sanitized_name",
    "select_tool", "signature_checked", "tool_description", "tool_runner",
]

_on_rust = decider("tools")


class ToolSchemaError(ValueError):
    """A tool's argument schema cannot be described (it nests deeper than the
    deep-schema thread can follow); the message names the tool or model."""


# --------------------------------------------------------------------------- JSON copies


def json_copy(value: Any) -> Any:
    """A copy of JSON-shaped data (dicts, lists, scalars), without recursion:
    a schema of any depth copies. Tuples become lists as JSON would have
    them; other objects are shared, as in the original."""
    if not isinstance(value, (dict, list, tuple)):
        return value
    root: Any = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        if isinstance(source, dict):
            for key, item in source.items():
                if isinstance(item, (dict, list, tuple)):
                    child: Any = {} if isinstance(item, dict) else []
                    target[key] = child
                    stack.append((item, child))
                else:
                    target[key] = item
        else:
            for item in source:
                if isinstance(item, (dict, list, tuple)):
                    child = {} if isinstance(item, dict) else []
                    target.append(child)
                    stack.append((item, child))
                else:
                    target.append(item)
    return root


# --------------------------------------------------------------------------- deep schemas

# The deep-schema thread: a native stack this large follows about a million
# Python frames of schema walking; the recursion limit is raised to match
# while it works (Python's limit is process-wide: a lock keeps one raise at a time).
DEEP_STACK_BYTES = 1024 * 1024 * 1024
DEEP_RECURSION_LIMIT = 200_000
_deep_lock = threading.Lock()  # guards the process-wide recursion limit
_deep_executor: Any = None


# The recursion limits asked for by calls running now, and the limit before the first.
_raised_limits: list[int] = []
_limit_before_raises = 0


@contextlib.contextmanager
def _recursion_limit_at_least(depth: int) -> Iterator[None]:
    """Python's recursion limit at least ``depth`` while the block runs (it is
    process-wide: overlapping blocks keep the highest until the last ends)."""
    global _limit_before_raises
    with _deep_lock:
        if not _raised_limits:
            _limit_before_raises = sys.getrecursionlimit()
        _raised_limits.append(depth)
        sys.setrecursionlimit(max([_limit_before_raises, *_raised_limits]))
    try:
        yield
    finally:
        with _deep_lock:
            _raised_limits.remove(depth)
            sys.setrecursionlimit(max([_limit_before_raises, *_raised_limits]))


def _run_deep(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on the deep-schema thread, with the recursion limit raised."""
    global _deep_executor
    from crewai_rust.task_pool import RustTaskExecutor

    def deep() -> Any:
        with _recursion_limit_at_least(DEEP_RECURSION_LIMIT):
            return fn(*args, **kwargs)

    if _deep_executor is None:
        _deep_executor = RustTaskExecutor(max_concurrency=1, stack_size=DEEP_STACK_BYTES, thread_name="crewai-schema")
    return _deep_executor.submit(deep).result()


# --------------------------------------------------------------------------- descriptions once per model

# The deepest a described schema may nest (JSON containers inside each other):
# it must still serialize where it is sent (json, httpx: one C recursion level
# per container, under Python's default limit of 1,000 with the caller's own
# frames on top). Deeper schemas are refused with ToolSchemaError.
MAX_SCHEMA_NESTING = 800


def _nesting(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in current.values() if isinstance(item, (dict, list)))
        elif isinstance(current, list):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in current if isinstance(item, (dict, list)))
    return deepest


# model class -> {strip_null_types: (the model's core schema object, its description)}
_descriptions: weakref.WeakKeyDictionary[type, dict[bool, tuple[Any, Any]]] = weakref.WeakKeyDictionary()
_descriptions_lock = threading.Lock()


def _schema_identity(model: type) -> Any:
    # Rebuilding a model (model_rebuild) replaces its core schema: the cached description goes with it.
    return model.__dict__.get("__pydantic_core_schema__")


def model_description(model: type, strip_null_types: bool, compute: Callable[..., Any]) -> Any:
    """``compute(model, strip_null_types=...)`` (upstream's
    ``generate_model_description``) once per model class and setting, a copy
    handed out each time; a computation that hits the recursion limit runs
    again on the deep-schema thread. None when the tools component is off."""
    if not _on_rust():
        return None
    identity = _schema_identity(model)
    try:
        cached = _descriptions.get(model, {}).get(strip_null_types)
    except TypeError:  # not weak-referenceable: describe it each time
        cached, identity = None, None
    if cached is not None and identity is not None and cached[0] is identity:
        if isinstance(cached[1], ToolSchemaError):
            raise ToolSchemaError(str(cached[1]))
        return json_copy(cached[1])
    name = getattr(model, "__name__", repr(model))
    outcome: Any
    try:
        try:
            outcome = compute(model, strip_null_types=strip_null_types)
        except RecursionError:
            try:
                outcome = _run_deep(compute, model, strip_null_types=strip_null_types)
            except RecursionError:
                raise ToolSchemaError(
                    f"the argument schema {name!r} nests too deep to describe (past {DEEP_RECURSION_LIMIT} "
                    f"frames on a {DEEP_STACK_BYTES >> 20} MiB stack)"
                ) from None
        nesting = _nesting(outcome)
        if nesting > MAX_SCHEMA_NESTING:
            raise ToolSchemaError(
                f"the argument schema {name!r} nests {nesting} levels deep once described; crewai_rust refuses "
                f"schemas past {MAX_SCHEMA_NESTING} levels (the JSON encoders that send it would fail on it)"
            )
    except ToolSchemaError as error:
        outcome = error
    if identity is not None:
        with _descriptions_lock:
            try:
                _descriptions.setdefault(model, {})[strip_null_types] = (
                    identity, outcome if isinstance(outcome, ToolSchemaError) else json_copy(outcome))
            except TypeError:
                pass
    if isinstance(outcome, ToolSchemaError):
        raise ToolSchemaError(str(outcome))
    return outcome


# (sanitized-name input, args schema, description) -> the rendered ReAct block
_tool_blocks: weakref.WeakKeyDictionary[type, dict[tuple[str, str], tuple[Any, str]]] = weakref.WeakKeyDictionary()
_tool_blocks_without_schema: dict[tuple[str, str], str] = {}


def tool_description(name: str, args_schema: type | None, description: str,
                     compute: Callable[[str, Any, str], str]) -> str | None:
    """``compute(name, args_schema, description)`` (upstream's
    ``format_description_for_llm``) once per tool shape; a schema that cannot
    be described raises :class:`ToolSchemaError` naming the tool. None when
    the tools component is off."""
    if not _on_rust():
        return None
    key = (name, description)
    if args_schema is None:
        block = _tool_blocks_without_schema.get(key)
        if block is None:
            block = compute(name, args_schema, description)
            if len(_tool_blocks_without_schema) < 10_000:
                _tool_blocks_without_schema[key] = block
        return block
    identity = _schema_identity(args_schema)
    try:
        cached = _tool_blocks.get(args_schema, {}).get(key)
    except TypeError:
        cached, identity = None, None
    if cached is not None and identity is not None and cached[0] is identity:
        return cached[1]
    try:
        try:
            block = compute(name, args_schema, description)
        except RecursionError:  # the schema's own rendering (json.dumps) of a deep but allowed schema
            block = _run_deep(compute, name, args_schema, description)
    except ToolSchemaError as error:
        raise ToolSchemaError(f"tool {name!r}: {error}") from None
    if identity is not None:
        with _descriptions_lock:
            try:
                _tool_blocks.setdefault(args_schema, {})[key] = (identity, block)
            except TypeError:
                pass
    return block


def model_from_json_schema(tool_name: str, json_schema: Any, compute: Callable[[], type]) -> type | None:
    """``compute()`` (an MCP tool's argument model built from its JSON schema by
    upstream's ``create_model_from_schema``), guarded: a schema nesting past
    :data:`MAX_SCHEMA_NESTING` is refused and one that recurses too deep for
    this thread is built on the deep-schema thread; past either,
    :class:`ToolSchemaError` names the tool. None when the tools component is
    off (upstream builds it unguarded)."""
    if not _on_rust():
        return None
    nesting = _nesting(json_schema)
    if nesting > MAX_SCHEMA_NESTING:
        raise ToolSchemaError(f"tool {tool_name!r}: its input schema nests {nesting} levels deep; crewai_rust "
                              f"refuses schemas past {MAX_SCHEMA_NESTING} levels")
    try:
        return compute()
    except RecursionError:
        try:
            return _run_deep(compute)  # type: ignore[no-any-return]
        except RecursionError:
            raise ToolSchemaError(f"tool {tool_name!r}: its input schema nests too deep to build a model "
                                  "from") from None


# --------------------------------------------------------------------------- repeated definitions

# Past this many nodes once every $ref is inlined, definitions used more than
# once keep their $ref. Upstream's inlining is kept below it (any ordinary
# tool: a few hundred nodes).
MAX_INLINED_NODES = 20_000


def _nodes_and_refs(node: Any) -> tuple[int, dict[str, int]]:
    """Nodes of ``node`` (dicts, lists, values), and how often it names each local definition."""
    count, refs = 0, {}
    stack = [node]
    while stack:
        current = stack.pop()
        count += 1
        if isinstance(current, dict):
            ref = current.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref[len("#/$defs/"):]
                refs[name] = refs.get(name, 0) + 1
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    return count, refs


def bounded_refs(schema: dict[str, Any]) -> set[str] | None:
    """The definitions of ``schema`` to keep as ``$ref`` rather than inline:
    None (inline them all, as upstream does) when the component is off or the
    inlined schema stays under :data:`MAX_INLINED_NODES`; otherwise every
    definition referenced more than once in the whole schema."""
    if not _on_rust():
        return None
    defs = schema.get("$defs")
    if not isinstance(defs, dict) or not defs:
        return None
    own = {name: _nodes_and_refs(body) for name, body in defs.items()}
    # Inlined size of each definition, bottom-up over the reference graph (a
    # definition on a cycle counts as itself: upstream inlines a cycle's
    # second visit as a stub).
    inlined: dict[str, int] = {}
    visiting: set[str] = set()

    def size_of(name: str) -> int:
        stack: list[tuple[str, bool]] = [(name, False)]
        while stack:
            current, expanded = stack.pop()
            if current in inlined:
                continue
            nodes, refs = own.get(current, (1, {}))
            if not expanded:
                visiting.add(current)
                stack.append((current, True))
                stack.extend((r, False) for r in refs if r in own and r not in inlined and r not in visiting)
                continue
            visiting.discard(current)
            total = nodes
            for ref, times in refs.items():
                total += times * inlined.get(ref, own.get(ref, (1, {}))[0])
                if total > MAX_INLINED_NODES:
                    break
            inlined[current] = min(total, MAX_INLINED_NODES + 1)
        return inlined[name]

    top = {k: v for k, v in schema.items() if k != "$defs"}
    nodes, refs = _nodes_and_refs(top)
    total = nodes + sum(times * size_of(ref) for ref, times in refs.items() if ref in own)
    if total <= MAX_INLINED_NODES:
        return None
    used: dict[str, int] = dict(refs)
    for body_refs in (r for _, r in own.values()):
        for ref, times in body_refs.items():
            used[ref] = used.get(ref, 0) + times
    return {name for name, times in used.items() if times > 1 and name in defs}


# --------------------------------------------------------------------------- per-call lookups

# (name, max_length) -> sanitized name. Bounded: names come from tool
# definitions and LLM replies; past the bound, names are sanitized each time.
_sanitized: dict[tuple[str, int], str] = {}
_MAX_SANITIZED = 10_000


def sanitized_name(name: str, max_length: int, compute: Callable[[str, int], str]) -> str | None:
    """``compute(name, max_length)`` (upstream's ``sanitize_tool_name``: Unicode
    normalization and six regular expressions, called for every tool several
    times per tool call) once per name. None when the tools component is off."""
    if not _on_rust():
        return None
    key = (name, max_length)
    sanitized = _sanitized.get(key)
    if sanitized is None:
        sanitized = compute(name, max_length)
        if len(_sanitized) < _MAX_SANITIZED:
            _sanitized[key] = sanitized
    return sanitized


class ToolListText:
    """A text ``ToolUsage`` renders from all its tools (the ReAct tool block,
    the tool names): upstream renders both for every ``ToolUsage``, that is
    every ReAct tool call, though only error replies and every third result
    read them. With the component on (:meth:`deferred` at construction) the
    text is rendered from the instance's ``tools`` at its first read; a value
    assigned is kept as upstream's attribute would be."""

    def __init__(self, render: Callable[[Any], str]) -> None:
        self.render = render
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @staticmethod
    def deferred() -> bool:
        """Whether a ``ToolUsage`` built now leaves the rendering to the first read."""
        return _on_rust()

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            return obj.__dict__[self.name]
        except KeyError:
            text = obj.__dict__[self.name] = self.render(obj.tools)
            return text

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


# model class -> (its core schema object, the names of its JSON schema's properties)
_argument_names: weakref.WeakKeyDictionary[type, tuple[Any, frozenset[str]]] = weakref.WeakKeyDictionary()


def argument_names(model: type) -> frozenset[str] | None:
    """The property names of ``model.model_json_schema()`` (the arguments a tool
    call may pass, which ``ToolUsage`` recomputes with a full JSON schema on
    every call), once per model class; computed on the deep-schema thread when
    the schema is too deep for this one. None when the tools component is off."""
    if not _on_rust():
        return None
    identity = _schema_identity(model)
    try:
        cached = _argument_names.get(model)
    except TypeError:
        cached, identity = None, None
    if cached is not None and identity is not None and cached[0] is identity:
        return cached[1]

    def names() -> frozenset[str]:
        return frozenset(model.model_json_schema()["properties"].keys())  # type: ignore[attr-defined]

    try:
        found = names()
    except RecursionError:
        found = _run_deep(names)
    if identity is not None:
        try:
            _argument_names[model] = (identity, found)
        except TypeError:
            pass
    return found


# plain function -> {(bound?, args schema class): what the check saw}
_checked_signatures: weakref.WeakKeyDictionary[Any, dict[tuple[bool, type], tuple[Any, ...]]] = (
    weakref.WeakKeyDictionary())
_MAX_SCHEMAS_PER_FUNCTION = 16


def _signature_inputs(function: Any, args_schema: type) -> tuple[Any, ...]:
    # What inspect.signature and the field check read: reassigned code or
    # defaults, or a rebuilt schema, is a new check.
    return (function.__code__, function.__defaults__, function.__kwdefaults__,
            _schema_identity(args_schema), args_schema.__dict__.get("__pydantic_fields__"))


def signature_checked(func: Any, args_schema: type, check: Callable[[], None]) -> bool:
    """Run ``check()`` (upstream's ``_validate_function_signature``: an
    ``inspect.signature`` of the tool's function, for every tool of every
    task, twice) once per function and argument schema while neither
    changes; a check that raises is not kept. False when the tools component
    is off, or for callables other than functions and methods (the caller
    then checks them itself)."""
    if not _on_rust():
        return False
    bound = isinstance(func, types.MethodType)
    function = func.__func__ if bound else func
    if type(function) is not types.FunctionType or (
            "__signature__" in function.__dict__ or "__wrapped__" in function.__dict__):
        return False  # a signature given or taken from elsewhere: not followed here
    key = (bound, args_schema)
    inputs = _signature_inputs(function, args_schema)
    seen = _checked_signatures.get(function)
    if seen is not None and seen.get(key) == inputs:
        return True
    check()
    if seen is None:
        seen = _checked_signatures.setdefault(function, {})
    if len(seen) >= _MAX_SCHEMAS_PER_FUNCTION:
        seen.clear()
    seen[key] = inputs
    return True


# --------------------------------------------------------------------------- tool selection


def select_tool(tools: list[Any], sanitized_input: str, sanitize: Callable[[str], str]) -> Any:
    """The first tool whose sanitized name is ``sanitized_input`` (the tool
    upstream's similarity sort ranks first: only an equal name scores 1.0),
    or None: when the component is off, or on a miss (upstream's fuzzy
    match then runs)."""
    if not _on_rust():
        return None
    for tool in tools:
        if sanitize(tool.name) == sanitized_input:
            return tool
    return None


# --------------------------------------------------------------------------- running tools


class ToolExecutionError(Exception):
    """A tool call that did not return: the tool is unknown, its arguments do
    not validate, or the tool raised, recursed too deep or timed out. Names
    the tool; the original exception is ``__cause__``."""

    def __init__(self, tool_name: str, cause: str) -> None:
        super().__init__(f"tool {tool_name!r}: {cause}")
        self.tool_name = tool_name


class _TimedOut(ToolExecutionError):
    """A tool call past its executor's timeout."""


# What a tool's exception passes through as itself: stopping the process is not a tool failure.
_PASS_THROUGH = (KeyboardInterrupt, SystemExit)
DEFAULT_TOOL_STACK_BYTES = 256 * 1024 * 1024
# Native stack a tool thread keeps per level of Python's recursion limit. The
# most measured per level (CPython 3.11) is about 1.9 KiB, recursion through
# pydantic validation; through json, re or map it is 0.1-0.6 KiB, and plain
# Python calls take none. Twice the most, so that recursing to the limit
# raises RecursionError before the stack can overflow.
STACK_BYTES_PER_RECURSION_LEVEL = 4096


class RustToolExecutor:
    """Runs tools on worker threads created natively with a large stack.

    ``register(tool)`` takes a crewai ``BaseTool`` (or ``CrewStructuredTool``)
    and describes its argument schema once: a schema that cannot be described
    (:data:`MAX_SCHEMA_NESTING`) is refused there, naming the tool.
    ``execute_tool(name, args)`` validates ``args`` (a dict or a JSON string)
    against the tool's schema with upstream's messages, runs the tool and
    returns its result; anything else becomes :class:`ToolExecutionError`.

    * ``max_recursion_depth``: Python's recursion limit while a tool runs (None:
      the interpreter's). Python's limit is process-wide, so while such a tool
      runs other threads may recurse that deep too; the tool's own thread has
      ``stack_size`` bytes of native stack for it, which must hold
      :data:`STACK_BYTES_PER_RECURSION_LEVEL` per level (the default 256 MiB:
      65,536 levels). Recursing past it is a ``ToolExecutionError``.
    * ``timeout``: seconds a call may take (None: no limit). Past it the call
      is a ``ToolExecutionError``; the tool's thread runs on to its end (a
      Python thread cannot be stopped) without holding up the caller.
    """

    def __init__(self, *, max_recursion_depth: int | None = None, stack_size: int = DEFAULT_TOOL_STACK_BYTES,
                 timeout: float | None = None, max_concurrency: int | None = None) -> None:
        from crewai_rust.task_pool import RustTaskExecutor

        if max_recursion_depth is not None and max_recursion_depth < 50:
            raise ValueError(f"max_recursion_depth must be at least 50, not {max_recursion_depth}")
        if max_recursion_depth is not None and max_recursion_depth * STACK_BYTES_PER_RECURSION_LEVEL > stack_size:
            needed = -(-max_recursion_depth * STACK_BYTES_PER_RECURSION_LEVEL // (1024 * 1024))
            raise ValueError(
                f"max_recursion_depth={max_recursion_depth} needs a stack_size of at least {needed} MiB "
                f"({STACK_BYTES_PER_RECURSION_LEVEL} bytes per level, so that a tool recursing that deep gets "
                f"RecursionError, not a stack overflow), not {stack_size / (1024 * 1024):g} MiB")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.max_recursion_depth = max_recursion_depth
        self.timeout = timeout
        self._pool = RustTaskExecutor(max_concurrency, stack_size=stack_size, thread_name="crewai-tool")
        self._tools: dict[str, Any] = {}
        self._lock = threading.Lock()

    def register(self, tool: Any) -> None:
        """Add ``tool`` under its sanitized name (a later one of that name replaces it)."""
        from crewai.tools.structured_tool import CrewStructuredTool
        from crewai.utilities.pydantic_schema_utils import generate_model_description
        from crewai.utilities.string_utils import sanitize_tool_name

        structured = tool if isinstance(tool, CrewStructuredTool) else tool.to_structured_tool()
        name = sanitize_tool_name(structured.name)
        if structured.args_schema is not None:
            try:
                generate_model_description(structured.args_schema)
            except ToolSchemaError as error:
                raise ToolSchemaError(f"tool {name!r}: {error}") from None
        with self._lock:
            self._tools[name] = structured

    def tool_names(self) -> list[str]:
        with self._lock:
            return sorted(self._tools)

    def execute_tool(self, name: str, args: dict[str, Any] | str | None = None) -> Any:
        """Run the tool registered as ``name`` with ``args``; its result."""
        from crewai.utilities.string_utils import sanitize_tool_name

        with self._lock:
            tool = self._tools.get(sanitize_tool_name(name))
            known = sorted(self._tools)
        if tool is None:
            raise ToolExecutionError(name, f"no such tool; the registered tools are {', '.join(known) or 'none'}")
        return self.call(name, tool.invoke, {} if args is None else args)

    def call(self, tool_name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` as a call of the tool ``tool_name`` on a tool thread."""
        try:
            return self._on_tool_thread(tool_name, fn, args, kwargs)
        except (_TimedOut, *_PASS_THROUGH):
            raise
        except RecursionError as error:
            raise ToolExecutionError(tool_name, f"recursed past the recursion limit ({error})") from error
        except BaseException as error:
            raise ToolExecutionError(tool_name, f"{type(error).__name__}: {error}") from error

    def call_for_agent(self, tool_name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """:meth:`call` for an agent's tool call: the tool's own exceptions come
        back as themselves (the agent shows them as upstream's tool-error
        observation); a ``BaseException`` that is not an ``Exception`` (which
        upstream lets end the crew, or hang an async task) and a timeout become
        :class:`ToolExecutionError`."""
        try:
            return self._on_tool_thread(tool_name, fn, args, kwargs)
        except (*_PASS_THROUGH, Exception):
            raise
        except BaseException as error:
            raise ToolExecutionError(tool_name, f"{type(error).__name__}: {error}") from error

    async def acall_for_agent(self, tool_name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """:meth:`call_for_agent` for a caller that awaits the tool (``arun``,
        ``ainvoke``). A coroutine function (an async tool's body) runs on the
        caller's event loop, where its clients live; any other callable runs
        on a tool thread, awaited without blocking the loop (upstream: the
        loop's default executor). Within the timeout either way, and a
        ``BaseException`` that is not an ``Exception`` becomes
        :class:`ToolExecutionError`, except the cancellation of the awaiting
        task itself, which goes on as a cancellation."""
        import asyncio

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                try:
                    if asyncio.iscoroutinefunction(fn):
                        return await fn(*args, **kwargs)
                    return await asyncio.wrap_future(self._pool.submit(self._guarded, fn, args, kwargs))
                except asyncio.CancelledError as error:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():  # the caller's cancellation, or the deadline
                        raise
                    raise ToolExecutionError(tool_name, f"{type(error).__name__}: {error}") from error
        except TimeoutError:
            if deadline.expired():
                raise _TimedOut(tool_name, f"timed out after {self.timeout} seconds") from None
            raise
        except (*_PASS_THROUGH, Exception):
            raise
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            raise ToolExecutionError(tool_name, f"{type(error).__name__}: {error}") from error

    def _on_tool_thread(self, tool_name: str, fn: Callable[..., Any], args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
        """``fn`` on a tool thread, within the timeout (past it, :class:`_TimedOut`)."""
        future = self._pool.submit(self._guarded, fn, args, kwargs)
        try:
            return future.result(timeout=self.timeout)
        except TimeoutError:
            if future.done():  # the tool's own TimeoutError
                raise
            future.cancel()
            raise _TimedOut(tool_name, f"timed out after {self.timeout} seconds") from None

    def _guarded(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.max_recursion_depth is None:
            return fn(*args, **kwargs)
        with _recursion_limit_at_least(self.max_recursion_depth):
            return fn(*args, **kwargs)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)


def _agent_tool_timeout() -> float | None:
    raw = os.environ.get("CREWAI_RUST_TOOL_TIMEOUT", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"CREWAI_RUST_TOOL_TIMEOUT must be a number of seconds, not {raw!r}") from None
    if not value > 0:
        raise ValueError(f"CREWAI_RUST_TOOL_TIMEOUT must be a positive number of seconds, not {raw!r}")
    return value


_agent_executor: RustToolExecutor | None = None
_agent_executor_lock = threading.Lock()
AGENT_TOOL_STACK_BYTES = 64 * 1024 * 1024


def agent_tool_executor() -> RustToolExecutor:
    """The executor agents' tool calls run on: 64 MiB tool threads, no time
    limit unless ``CREWAI_RUST_TOOL_TIMEOUT`` (seconds) is set."""
    global _agent_executor
    with _agent_executor_lock:
        if _agent_executor is None:
            _agent_executor = RustToolExecutor(stack_size=AGENT_TOOL_STACK_BYTES, timeout=_agent_tool_timeout())
        return _agent_executor


def tool_runner() -> Callable[..., Any] | None:
    """How ``BaseTool.run`` and ``CrewStructuredTool.invoke`` call a tool's
    body on the fork: ``runner(tool_name, fn, *args, **kwargs)`` on a tool
    thread (:meth:`RustToolExecutor.call_for_agent`); None when the tools
    component is off (the body runs on the caller's thread, as upstream's)."""
    if not _on_rust():
        return None
    return agent_tool_executor().call_for_agent


def async_tool_runner() -> Callable[..., Any] | None:
    """How ``BaseTool.arun``, ``Tool.arun`` and ``CrewStructuredTool.ainvoke``
    await a tool's body on the fork: ``await runner(tool_name, fn, *args,
    **kwargs)`` (:meth:`RustToolExecutor.acall_for_agent`); None when the
    tools component is off (upstream awaits it directly)."""
    if not _on_rust():
        return None
    return agent_tool_executor().acall_for_agent
