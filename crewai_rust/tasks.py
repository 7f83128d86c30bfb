"""Tasks component: the framework cost of running crewai's tasks.

Every task runs its agent's executor, and the executor is a crewai ``Flow``:
with an instant LLM, most of a task's framework time goes to the Flow
runtime's own machinery. With the tasks component on (``CREWAI_RUST_TASKS``),
the fork's hooks send three parts of it here:

* **Which methods fire.** Upstream's ``Flow._find_triggered_methods`` walks
  every listener and router of the flow and re-evaluates its condition on
  each completed step (31 listeners in the agent executor, about 40 walks per
  task). :func:`find_triggered_methods` asks the flow definition's native
  :class:`FlowGraph` (compiled once per definition) for the listeners whose
  condition names the trigger, and updates the flow's own ``_pending_events``
  and ``_fired_or_listeners`` exactly as upstream's walk does for those.
  Listeners whose condition does not name the trigger are not touched: a
  condition is a positive formula over events seen, so an event it does not
  name cannot satisfy it (upstream would only add the name to their seen set).
* **Steps without a thread hop.** ``Flow.kickoff`` runs the flow with
  ``asyncio.run``, and every sync step goes to a new worker thread through
  ``asyncio.to_thread`` (about 26 hops and 2.5 new threads per task).
  :func:`flow_runner` runs the flow's event loop (as ``asyncio.run`` makes
  it, in a copy of the caller's context) on a reusable flow thread, never the
  caller's; its default executor, and :func:`to_thread` for the runtime's own
  step calls, run a sync call right there on the flow thread when nothing
  else on the loop could run meanwhile: no callback ready, no timer set, no
  file descriptor watched but the loop's wake-up pipe, no call of its still
  on a worker thread (the other tasks, a ``gather`` of listeners say, wait
  for this one). The call sees what a worker thread shows it: not the
  caller's thread, no running and no current event loop (``asyncio.run``
  inside a step works), a copy of the context. Otherwise (listeners running
  in parallel, a racing group, a timer) it goes to a worker thread as
  upstream's does. What differs: consecutive steps of a flow share the flow
  thread (upstream's may land on different pool threads), so a thread-local
  value a step sets is seen by the next; a call another thread schedules on
  the flow's loop (``call_soon_threadsafe``) waits for the running step.
* **Private attributes.** The runtime reads its pydantic private attributes
  (``self._definition``, ``self._completed_methods``...) about 1,100 times
  per task; pydantic answers each through ``BaseModel.__getattr__`` after a
  failed lookup and a raised AttributeError. :func:`fast_private_attributes`
  gives the Flow class a plain descriptor per private attribute that reads
  the same ``__pydantic_private__`` entry directly (setting is untouched:
  pydantic's ``__setattr__`` still does it).
* **One state class per state type.** A flow typed ``Flow[SomeModel]`` whose
  model is not a ``FlowState`` (the agent executor's) defines a new pydantic
  class ``StateWithId(FlowState, SomeModel)`` for every instance: about 4 ms,
  80% of building an agent's executor, which ``Crew.kickoff`` does for every
  agent. :func:`state_class_with_id` defines it once per state type (same
  name, module and qualified name, same fields and validation).
* **Telemetry's package version.** crewai's telemetry reads its own version
  from the installed package's metadata (``importlib.metadata.version``, a
  directory scan and a file parse) for each span: about 8% of a task's
  framework time with telemetry on, crewai's default. :func:`package_version`
  reads it once per process.
* **An empty file store.** crewai reads and clears a task's input files
  through ``aiocache`` with one ``asyncio.run`` each (four per task), also
  when no file was ever stored. :func:`file_store_call_is_noop` answers those
  reads and clears at once while the in-memory store is empty.

Async tasks on the native pool, one agent running several tasks at once and
the execution deadline live in :mod:`crewai_rust.task_pool`; their hooks are
importable from here too, as the component's hooks all are.

Each hook returns None when the component resolves to upstream Python
(``CREWAI_RUST_TASKS=0``, ``CREWAI_RUST=0``, or no native module), and the
patched function then runs upstream's body unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import importlib.metadata
import os
import queue
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ClassVar, TypeVar

from crewai_rust._backend import decider, load_native
from crewai_rust.task_pool import (
    Cancellation,
    RustTaskExecutor,
    _on_pool_thread,
    deadline_executor,
    default_max_concurrency,
    default_task_executor,
    execute_concurrent_tasks,
    executor_per_execution,
    needs_own_executor,
    pooled_kickoff,
    submit_task_execution,
    with_own_executors,
)

__all__ = [
    "PARTS", "Cancellation", "RustTaskExecutor", "deadline_executor", "default_max_concurrency", "default_task_executor", "execute_concurrent_tasks",
    "executor_per_execution", "fast_private_attributes", "file_store_call_is_noop", "find_triggered_methods",
    "flow_runner", "needs_own_executor", "only_parts", "package_version", "pooled_kickoff", "state_class_with_id",
    "submit_task_execution", "to_thread", "with_own_executors",
]

T = TypeVar("T")

_on_rust = decider("tasks")

# The component's parts, by the hook that runs each. The first is the Rust
# core; the flow thread is the fork's Python; the other four are fixes upstream
# could take as they are. Only :func:`only_parts` switches them one by one.
PARTS = ("dispatch_index", "flow_thread", "private_attributes", "state_class", "package_version", "file_store")
_parts_off: frozenset[str] = frozenset()


@contextlib.contextmanager
def only_parts(*names: str) -> Iterator[None]:
    """Run the block with only the named parts of the component on (the others
    run upstream's code): for measuring what each part gains, as
    ``python -m crewai_rust bench tasks.parts`` does. Process-wide and not
    meant for concurrent use; the component itself must still be on."""
    global _parts_off
    unknown = set(names) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown tasks parts {sorted(unknown)}; the parts are {', '.join(PARTS)}")
    saved = _parts_off
    _parts_off = frozenset(PARTS) - set(names)
    try:
        yield
    finally:
        _parts_off = saved


def _part_on(name: str) -> bool:
    return _on_rust() and name not in _parts_off
# id(definition) -> (weak reference to it, its graph or None when upstream's walk must read it).
_graphs: dict[int, tuple[weakref.ref[Any], Any]] = {}


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    entry = _graphs.get(key)
    if entry is not None and entry[0] is ref:
        del _graphs[key]


def flow_graph(definition: Any) -> Any:
    """The native graph of a ``FlowDefinition``, compiled on first use; None
    when the native module is missing or a condition is of a form the graph
    does not compile (upstream's walk then reads it).

    Cached per definition object for its lifetime: a definition is built once
    per Flow class (or per named or extended instance) and not changed after.
    """
    key = id(definition)
    entry = _graphs.get(key)
    if entry is not None and entry[0]() is definition:
        return entry[1]
    native = load_native()
    if native is None:
        return None
    try:
        graph = native.FlowGraph(definition)
    except native.UnsupportedFlowGraph:
        graph = None
    ref = weakref.ref(definition, lambda r, key=key: _forget(key, r))
    _graphs[key] = (ref, graph)
    return graph


def find_triggered_methods(flow: Any, trigger_method: str, router_only: bool) -> list[str] | None:
    """``flow._find_triggered_methods(trigger_method, router_only)`` on the
    native graph, or None when the tasks component is off or the flow's graph
    is not native (the caller then runs upstream's walk)."""
    if not _part_on("dispatch_index"):
        return None
    private = flow.__pydantic_private__
    try:
        definition = private["_definition"]
        pending = private["_pending_events"]
        fired_once = private["_fired_or_listeners"]
    except (KeyError, TypeError):  # a flow built without pydantic's init (model_construct and the like)
        definition, pending, fired_once = flow._definition, flow._pending_events, flow._fired_or_listeners
    if type(pending) is not dict or type(fired_once) is not set:
        return None
    graph = flow_graph(definition)
    if graph is None:
        return None
    return graph.find_triggered(trigger_method, router_only, pending, fired_once)


class _InlineWhenAlone(concurrent.futures.ThreadPoolExecutor):
    """A loop's default executor that runs a call in the loop's own thread when
    nothing else on the loop could run meanwhile; otherwise on worker threads.

    Nothing else could run when no callback is ready, no timer is set, no file
    descriptor but the loop's wake-up pipe is watched, and none of this
    executor's calls is still running on a worker thread: every other task
    then waits for the calling task (a ``gather`` of its listeners, say) or
    for another thread. A call from another thread that lands meanwhile
    (``call_soon_threadsafe``, a custom executor's result) runs when the call
    returns.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(thread_name_prefix="asyncio")  # what the loop's own default executor is
        self._loop = loop
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        # Set by the kicking-off thread on an interrupt: no further call starts
        # (upstream's loop stops on the spot, its running step finishing on its thread).
        self.interrupted = False

    def _alone(self) -> bool:
        loop: Any = self._loop
        return (
            not loop._ready
            and not loop._scheduled
            and self._in_flight == 0
            and len(loop._selector.get_map()) <= 1  # the self-pipe
        )

    def _done(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._in_flight_lock:  # called on the worker thread
            self._in_flight -= 1

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        if self.interrupted:
            stopped: concurrent.futures.Future[T] = concurrent.futures.Future()
            stopped.set_exception(asyncio.CancelledError())
            return stopped
        if asyncio.events._get_running_loop() is not self._loop or not self._alone():
            with self._in_flight_lock:
                self._in_flight += 1
            try:
                pooled = super().submit(fn, *args, **kwargs)
            except BaseException:
                self._done(None)  # type: ignore[arg-type]
                raise
            pooled.add_done_callback(self._done)
            return pooled
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        try:
            result = self.run_here(fn, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - a worker thread hands every exception to the future
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    def run_here(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` in this thread as a worker thread would: no running loop, no current loop."""
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)
        try:
            return fn(*args, **kwargs)
        finally:
            asyncio.set_event_loop(self._loop)
            asyncio.events._set_running_loop(self._loop)


async def to_thread(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``asyncio.to_thread`` for the Flow runtime's own calls (a sync step, its
    persistence): on a loop :func:`flow_runner` made, when nothing else could
    run meanwhile, the call runs here and now (in a copy of the context, as
    ``to_thread`` makes) without the round trip through a future and the
    loop's wake-up pipe; otherwise ``asyncio.to_thread`` itself."""
    loop = asyncio.get_running_loop()
    executor = getattr(loop, "_default_executor", None)
    if type(executor) is _InlineWhenAlone and _part_on("flow_thread") and executor._alone():
        if executor.interrupted:
            raise asyncio.CancelledError
        result = executor.run_here(contextvars.copy_context().run, func, *args, **kwargs)
        if executor.interrupted:  # upstream's loop would have stopped while this ran
            raise asyncio.CancelledError
        return result
    return await asyncio.to_thread(func, *args, **kwargs)


class _FlowThread:
    """A reusable thread that runs one flow's event loop at a time.

    The loop (and so a sync step run without a hop) is never on the thread
    that called ``kickoff``: upstream runs sync steps on worker threads, and
    callers may rely on a step not running on their own thread (its
    thread-locals, ``signal``, a thread check).
    """

    _idle: ClassVar[list[_FlowThread]] = []
    _idle_lock = threading.Lock()
    # As many idle as flows may run at once (a task pool's worth): making a
    # thread per flow costs an async task about a millisecond. An idle one ends
    # after IDLE_SECONDS.
    MAX_IDLE = 64
    IDLE_SECONDS = 60.0

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, name="crewai-flow", daemon=True)
        self._thread.start()

    @classmethod
    def take(cls) -> _FlowThread:
        with cls._idle_lock:
            if cls._idle:
                return cls._idle.pop()
        return cls()

    def _serve(self) -> None:
        while True:
            try:
                call, future = self._work.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._idle_lock:
                    if self not in self._idle:  # taken meanwhile: its work is on the way
                        continue
                    self._idle.remove(self)
                return
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, as a future does
                outcome: tuple[bool, Any] = (False, exc)
            else:
                outcome = (True, result)
            self.loop = None
            with self._idle_lock:  # idle before the caller wakes: it may want a thread at once
                keep = len(self._idle) < self.MAX_IDLE
                if keep:
                    self._idle.append(self)
            if outcome[0]:
                future.set_result(outcome[1])
            else:
                future.set_exception(outcome[1])
            if not keep:
                return

    def run(self, main: Coroutine[Any, Any, T], cancellation: Cancellation | None = None) -> T:
        """Run ``main`` on this thread's new event loop, in a copy of the caller's
        context (``asyncio.run`` copies it too); wait for it here. An interrupt
        while waiting cancels the flow, waits for it to wind down and raises
        KeyboardInterrupt, as ``asyncio.run`` does on Ctrl-C; a second one
        raises at once. ``cancellation`` (the pooled call's that kicked it off)
        stops the flow before its next step."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        context = contextvars.copy_context()
        self._work.put((lambda: context.run(self._run_loop, main, cancellation), future))
        try:
            return future.result()
        except KeyboardInterrupt:
            if future.done():
                raise
            loop = self.loop
            if loop is not None:
                _stop_flow_loop(loop)
            try:
                future.exception()  # wait for the flow to wind down
            finally:
                raise KeyboardInterrupt from None

    def _run_loop(self, main: Coroutine[Any, Any, T], cancellation: Cancellation | None) -> T:
        with asyncio.Runner() as runner:  # what asyncio.run uses
            loop = runner.get_loop()
            if all(hasattr(loop, name) for name in ("_ready", "_scheduled", "_selector")):  # asyncio's selector loops
                loop.set_default_executor(_InlineWhenAlone(loop))
            self.loop = loop
            if cancellation is None:
                return runner.run(main)
            key = cancellation.add(lambda: _stop_flow_loop(loop))
            try:
                return runner.run(main)
            finally:
                cancellation.remove(key)


def _stop_flow_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Stop a flow's loop (from any thread) before the flow's next step: no
    further step call starts, and every task on the loop is cancelled."""
    executor = getattr(loop, "_default_executor", None)
    if type(executor) is _InlineWhenAlone:
        executor.interrupted = True
    try:
        loop.call_soon_threadsafe(_cancel_every_task, loop)
    except RuntimeError:  # the loop closed meanwhile: the flow is over
        pass


def _cancel_every_task(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


def _reset_flow_threads_in_child() -> None:
    _FlowThread._idle = []
    _FlowThread._idle_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_flow_threads_in_child)


def _run_on_flow_thread(main: Coroutine[Any, Any, T]) -> T:
    return _FlowThread.take().run(main, getattr(_on_pool_thread, "cancellation", None))


def flow_runner() -> Callable[[Coroutine[Any, Any, T]], T] | None:
    """What ``Flow.kickoff`` runs its coroutine with instead of ``asyncio.run``, or
    None (upstream's ``asyncio.run``) when the tasks component is off or this
    Python has no ``asyncio.Runner`` (3.10)."""
    if not _part_on("flow_thread") or not hasattr(asyncio, "Runner"):
        return None
    return _run_on_flow_thread


# The coroutines of crewai.utilities.file_store whose result is None and
# which change nothing when the in-memory store holds no entry.
_FILE_STORE_NOOP_WHEN_EMPTY = frozenset({
    "aget_files", "aget_task_files", "aget_all_files", "aclear_files", "aclear_task_files",
})


def file_store_call_is_noop(coro: Coroutine[Any, Any, Any], store: Any) -> bool:
    """True when ``coro`` (a read or clear of crewai's file store) would return
    None and change nothing, because ``store`` is aiocache's in-memory cache
    without entries or plugins; the caller then closes it instead of running
    an event loop for it. False whenever the tasks component is off."""
    if not _part_on("file_store") or store is None:
        return False
    if getattr(coro, "cr_code", None) is None or coro.cr_code.co_name not in _FILE_STORE_NOOP_WHEN_EMPTY:
        return False
    cache = getattr(store, "_cache", None)
    return (
        type(store).__name__ == "SimpleMemoryCache"
        and type(store).__module__ == "aiocache.backends.memory"
        and type(cache) is dict
        and not cache
        and not getattr(store, "_plugins", True)
    )


class _PrivateAttributeReader:
    """A non-data descriptor for one pydantic private attribute: found before
    ``BaseModel.__getattr__`` (private values never live in the instance
    ``__dict__``), it returns what that ``__getattr__`` would, directly."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # on the class: the ModelPrivateAttr, as pydantic's metaclass answers
            return (owner or type(obj)).__private_attributes__[self.name]  # type: ignore[union-attr]
        if _on_rust() and "private_attributes" not in _parts_off:
            private = obj.__pydantic_private__
            if private is not None and self.name in private:
                return private[self.name]
        return _pydantic_getattr(obj, self.name)


def _pydantic_getattr(obj: Any, name: str) -> Any:
    from pydantic import BaseModel

    return BaseModel.__getattr__(obj, name)  # type: ignore[attr-defined]


def fast_private_attributes(cls: type) -> None:
    """Give ``cls`` (a pydantic model) a :class:`_PrivateAttributeReader` for each
    private attribute whose declared default is not itself a descriptor
    (pydantic delegates those to the default's ``__get__``). Subclasses inherit
    them; a private attribute a subclass adds is read through pydantic."""
    for name, attribute in cls.__private_attributes__.items():  # type: ignore[attr-defined]
        if name in cls.__dict__ or hasattr(attribute.default, "__get__"):
            continue
        type.__setattr__(cls, name, _PrivateAttributeReader(name))


@functools.cache
def _installed_version(distribution_name: str) -> str:
    return importlib.metadata.version(distribution_name)


def package_version(distribution_name: str) -> str | None:
    """``importlib.metadata.version(distribution_name)``, read once per process
    (packages are not upgraded under a running crew); None when the tasks
    component is off. A missing distribution raises each time, as upstream's
    call does."""
    if not _part_on("package_version"):
        return None
    return _installed_version(distribution_name)


_state_classes: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()
_state_classes_lock = threading.Lock()


def state_class_with_id(flow_state: type, state_type: type) -> type | None:
    """The ``StateWithId(flow_state, state_type)`` class ``Flow._create_initial_state``
    defines, made once per ``state_type`` and reused; None when the tasks component
    is off (the runtime then defines one per instance, as upstream does)."""
    if not _part_on("state_class"):
        return None
    with _state_classes_lock:
        cached = _state_classes.get(state_type)
        if cached is not None and cached.__bases__ == (flow_state, state_type):
            return cached

        class StateWithId(flow_state, state_type):  # type: ignore[misc, valid-type]
            pass

        StateWithId.__module__ = flow_state.__module__
        StateWithId.__qualname__ = "Flow._create_initial_state.<locals>.StateWithId"
        _state_classes[state_type] = StateWithId
        return StateWithId
