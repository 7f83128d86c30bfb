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
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from crewai_rust._backend import decider, load_native

if TYPE_CHECKING:
    from typing_extensions import Self

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


# --------------------------------------------------------------------------- async tasks on a bounded pool


def default_max_concurrency() -> int:
    """How many async tasks run at once by default: ``CREWAI_RUST_TASKS_MAX_CONCURRENCY``
    when set, else 64. An async task mostly waits on its LLM's network calls,
    so the bound is about threads, not CPUs; upstream has none (a thread per
    task)."""
    raw = os.environ.get("CREWAI_RUST_TASKS_MAX_CONCURRENCY")
    if raw is None or not raw.strip():
        return 64
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"CREWAI_RUST_TASKS_MAX_CONCURRENCY must be a positive integer, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"CREWAI_RUST_TASKS_MAX_CONCURRENCY must be a positive integer, not {raw!r}")
    return value


_on_pool_thread = threading.local()


class Cancellation:
    """Asks the flows a pooled call runs (an agent executor, say) to stop.

    Python cannot stop a thread, so cancelling is cooperative: every flow the
    call kicks off on its own thread stops before its next step (the running
    step, an LLM call say, finishes first), its kickoff raising
    ``asyncio.CancelledError``; flows it starts later stop before their first.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._stops: dict[int, Callable[[], None]] = {}

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def add(self, stop: Callable[[], None]) -> int:
        """Call ``stop`` on :meth:`cancel` (at once if cancelled already); a key for :meth:`remove`."""
        with self._lock:
            key = id(stop)
            if not self._cancelled:
                self._stops[key] = stop
                return key
        stop()
        return key

    def remove(self, key: int) -> None:
        with self._lock:
            self._stops.pop(key, None)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            stops = list(self._stops.values())
            self._stops.clear()
        for stop in stops:  # outside the lock: a stop may take other locks
            stop()


class _CancellableFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """A pooled call's future whose ``cancel()`` also cancels a call already running."""

    def __init__(self) -> None:
        super().__init__()
        self.cancellation = Cancellation()

    def cancel(self) -> bool:
        self.cancellation.cancel()
        return super().cancel()


class _PooledCall:
    """One submitted call: run on a pool thread in the submitter's context, its
    outcome (whatever it raises, ``BaseException`` included) set on its future."""

    __slots__ = ("args", "context", "fn", "future", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                 cancellable: bool = False) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.context = contextvars.copy_context()
        self.future: concurrent.futures.Future[Any] = _CancellableFuture() if cancellable else concurrent.futures.Future()

    def __call__(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        _on_pool_thread.active = True
        _on_pool_thread.cancellation = getattr(self.future, "cancellation", None)
        try:
            result = self.context.run(self.fn, *self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - the future carries every outcome; nothing is left unresolved
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)
        finally:
            _on_pool_thread.active = False
            _on_pool_thread.cancellation = None
            self.fn = self.args = self.kwargs = self.context = None  # type: ignore[assignment]

    def cancel(self) -> None:
        self.future.cancel()


class RustTaskExecutor:
    """Runs calls (and crewai ``Task`` s) on worker threads created and owned by
    the native side, at most ``max_concurrency`` at once, reused across tasks
    and crews.

    * A call runs in a copy of the submitter's ``contextvars`` context (what
      crewai's events and tracing read), as upstream's task threads do.
    * Its future always resolves: with its result, or whatever it raised,
      ``BaseException`` included (upstream's task thread lets those escape
      and leaves the future pending forever).
    * A call submitted from inside a running one (a nested crew's async tasks,
      which the outer call then waits for) may take a thread beyond the bound:
      queued behind its waiting parent it would never run.
    * After ``fork()`` the child gets a pool of its own (the parent's threads
      do not exist there). At interpreter exit queued calls are cancelled and
      running ones waited for, at most ``exit_wait`` seconds (Python's own
      thread pools wait without a limit; upstream's daemon threads not at all).
    """

    exit_wait: ClassVar[float] = 10.0

    def __init__(self, max_concurrency: int | None = None, *, stack_size: int = 8 * 1024 * 1024) -> None:
        native = load_native()
        if native is None:
            raise RuntimeError("RustTaskExecutor needs crewai_rust's native module, which did not load")
        self.max_concurrency = default_max_concurrency() if max_concurrency is None else max_concurrency
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {self.max_concurrency}")
        self._stack_size = stack_size
        self._lock = threading.Lock()
        self._pool: Any = None
        self._pool_pid = -1
        self._shut_down = False
        _executors.add(self)

    def _current_pool(self) -> Any:
        pid = os.getpid()
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new tasks after shutdown")
            if self._pool is None or self._pool_pid != pid:
                # In a forked child the parent's pool is left alone: its threads do not exist
                # here and its lock may be held by one of them; dropping it would touch that lock.
                if self._pool is not None:
                    _abandoned_pools.append(self._pool)
                self._pool = load_native().TaskPool(self.max_concurrency, stack_size=self._stack_size)
                self._pool_pid = pid
            return self._pool

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args, **kwargs)`` on the pool; its future."""
        return self._submit(_PooledCall(fn, args, kwargs))

    def submit_cancellable(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """:meth:`submit`, with a future whose ``cancel()`` also stops the call
        when it already runs, through its :class:`Cancellation`: the flows it
        kicked off stop before their next step."""
        return self._submit(_PooledCall(fn, args, kwargs, cancellable=True))

    def _submit(self, call: _PooledCall) -> concurrent.futures.Future[Any]:
        self._current_pool().submit(call, nested=getattr(_on_pool_thread, "active", False))
        return call.future

    def execute_concurrent_tasks(self, tasks: list[Any], *, timeout: float | None = None) -> list[Any]:
        """Run ``tasks`` at once (up to ``max_concurrency``): crewai ``Task`` s
        (``execute_sync`` with their own agent, context and tools) or plain
        callables. Returns their results in input order.

        On the first failure (in completion order) the tasks not yet started
        are cancelled, those running are asked to stop (their flows, an agent's
        executor say, stop before their next step: a Python thread cannot be
        stopped outright) and not waited for, and that exception is raised.
        Past ``timeout`` seconds the same happens with a ``TimeoutError``
        naming how many tasks had not finished.
        """
        futures = [self.submit_cancellable(_task_call(task)) for task in tasks]
        done, pending = concurrent.futures.wait(futures, timeout=timeout, return_when=concurrent.futures.FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and not f.cancelled() and f.exception() is not None), None)
        if failed is not None or pending:
            for future in pending:
                future.cancel()
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
            raise TimeoutError(f"{len(pending)} of {len(futures)} tasks had not finished after {timeout} seconds")
        return [f.result() for f in futures]

    def stats(self) -> Any:
        """The pool's ``TaskPoolStats`` (workers, peak_workers, running, queued)."""
        return self._current_pool().stats()

    def shutdown(self, wait: bool = True, *, timeout: float | None = None) -> None:
        """Refuse new calls, cancel the queued ones, and (``wait``) wait for the
        running ones, at most ``timeout`` seconds."""
        with self._lock:
            self._shut_down = True
            pool = self._pool if self._pool_pid == os.getpid() else None
        if pool is None:
            return
        for call in pool.shutdown():
            call.cancel()
        if wait:
            pool.wait_idle(timeout)


def _task_call(task: Any) -> Callable[[], Any]:
    if callable(task) and not hasattr(task, "execute_sync"):
        return task
    return task.execute_sync


_executors: weakref.WeakSet[RustTaskExecutor] = weakref.WeakSet()
# Pools of a parent process, kept (never dropped) in a forked child.
_abandoned_pools: list[Any] = []
_default_executor: RustTaskExecutor | None = None
_default_executor_lock = threading.Lock()


def default_task_executor() -> RustTaskExecutor:
    """The process's shared :class:`RustTaskExecutor` (made on first use)."""
    global _default_executor
    with _default_executor_lock:
        if _default_executor is None:
            _default_executor = RustTaskExecutor()
        return _default_executor


def _shut_down_at_exit() -> None:
    for executor in list(_executors):
        executor.shutdown(wait=True, timeout=RustTaskExecutor.exit_wait)


threading._register_atexit(_shut_down_at_exit)  # type: ignore[attr-defined]


def execute_concurrent_tasks(tasks: list[Any], *, max_concurrency: int | None = None,
                             timeout: float | None = None) -> list[Any]:
    """:meth:`RustTaskExecutor.execute_concurrent_tasks` on the shared executor,
    or on a new one bounded by ``max_concurrency`` (shut down when done)."""
    if max_concurrency is None:
        return default_task_executor().execute_concurrent_tasks(tasks, timeout=timeout)
    executor = RustTaskExecutor(max_concurrency)
    try:
        return executor.execute_concurrent_tasks(tasks, timeout=timeout)
    finally:
        executor.shutdown(wait=False)


def submit_task_execution(task: Any, agent: Any, context: str | None, tools: Any) -> concurrent.futures.Future[Any] | None:
    """What ``Task.execute_async`` returns on the fork: the task's execution on
    the shared pool (its future resolved whatever the execution raises), or
    None when the tasks component is off (upstream starts a thread per task)."""
    if not _on_rust():
        return None
    return default_task_executor().submit(_execute_task, task, agent, context, tools)


def _execute_task(task: Any, agent: Any, context: str | None, tools: Any) -> Any:
    import datetime

    own = _OwnExecutors()
    _own_executors.set(own)
    try:
        task.start_time = datetime.datetime.now()
        return task._execute_core(agent, context, tools)
    finally:
        own.release()


# --------------------------------------------------------------------------- one agent, several tasks at once

class _OwnExecutors(dict):  # type: ignore[type-arg]
    """id(agent) -> the agent's executor in one async task. The first async task
    of an agent to need one claims the agent's own executor when no other
    holds it (upstream's executor, repointed as upstream does); the others
    make executors of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[int] = []

    def claim_shared(self, agent: Any) -> bool:
        shared = agent.__dict__.get("agent_executor")
        if shared is None or getattr(shared, "_is_executing", False):
            return False
        key = id(agent)
        with _claims_lock:
            if key in _claimed_agents:
                return False
            _claimed_agents.add(key)
        self.claimed.append(key)
        self[key] = shared
        return True

    def release(self) -> None:
        with _claims_lock:
            _claimed_agents.difference_update(self.claimed)
        self.claimed.clear()


# Agents (by id) whose own executor an async task holds now.
_claimed_agents: set[int] = set()
_claims_lock = threading.Lock()

# Set in the context of each async task the fork runs; unset everywhere else.
_own_executors: contextvars.ContextVar[_OwnExecutors | None] = contextvars.ContextVar(
    "crewai_rust_own_executors", default=None)


class _ExecutorOfThisExecution(property):
    """``Agent.agent_executor`` read and set per execution.

    Upstream's agent holds one executor and points it at each task it runs
    (``create_agent_executor``), so two async tasks of one agent share it and
    the second fails with "Executor is already running" (crewAI #7332). Inside
    an async task the fork runs, the agent's executor is the one this
    execution claimed (the agent's own, when no other async task holds it) or
    made; until then, and everywhere else, the agent's own, stored where
    pydantic keeps the field. A ``property``
    subclass, so pydantic's ``__setattr__`` hands assignments to it.
    """

    def __init__(self) -> None:
        super().__init__(self._get, self._set, doc="The executor running this agent (per async task on the fork).")

    @staticmethod
    def _get(agent: Any) -> Any:
        own = _own_executors.get()
        if own is not None:
            executor = own.get(id(agent))
            if executor is not None:
                return executor
        return agent.__dict__.get("agent_executor")

    @staticmethod
    def _set(agent: Any, executor: Any) -> None:
        own = _own_executors.get()
        if own is not None:
            own[id(agent)] = executor
            return
        agent.__dict__["agent_executor"] = executor
        agent.__pydantic_fields_set__.add("agent_executor")


def executor_per_execution(agent_class: type) -> None:
    """Make ``agent_class.agent_executor`` an :class:`_ExecutorOfThisExecution`."""
    type.__setattr__(agent_class, "agent_executor", _ExecutorOfThisExecution())


def needs_own_executor(agent: Any) -> bool:
    """True inside an async task the fork runs that has no executor of
    ``agent`` yet and cannot claim the agent's own (another async task holds
    it): ``create_agent_executor`` then makes one instead of repointing the
    agent's."""
    own = _own_executors.get()
    return own is not None and own.get(id(agent)) is None and not own.claim_shared(agent)


async def _with_own_executors(coro: Coroutine[Any, Any, T]) -> T:
    own = _OwnExecutors()
    _own_executors.set(own)
    try:
        return await coro
    finally:
        own.release()


def with_own_executors(coro: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    """An async task of ``Crew.akickoff`` (``coro``, about to become an asyncio
    task with a context of its own) whose agents' executors are its own, when
    the tasks component is on; ``coro`` itself otherwise."""
    if not _on_rust():
        return coro
    return _with_own_executors(coro)


def pooled_kickoff(kickoff: Callable[..., T], *args: Any) -> asyncio.Future[T] | None:
    """What ``Crew.kickoff_async`` awaits on the fork: ``kickoff(*args)`` on the
    shared pool (instead of ``asyncio.to_thread`` on the loop's default
    executor), or None when the tasks component is off. Cancelling the await
    leaves the kickoff running to its end, as cancelling ``to_thread`` does."""
    if not _on_rust():
        return None
    return asyncio.wrap_future(default_task_executor().submit(kickoff, *args))


class _DeadlineExecutor:
    """What ``Agent._execute_with_timeout`` runs an execution with on the fork,
    in place of a new ``ThreadPoolExecutor``: the execution runs on the shared
    pool, and ``future.cancel()`` after the deadline stops it before its next
    step. Leaving the ``with`` block waits for it to stop, as upstream's block
    waits (nothing of it outlives the call: an LLM request of it still in
    flight ends first), but where upstream's execution goes on through its
    further steps (a tool call, another LLM call), the fork's ends at the
    running one."""

    def __init__(self) -> None:
        self._futures: list[concurrent.futures.Future[Any]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        concurrent.futures.wait(self._futures)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        future = default_task_executor().submit_cancellable(fn, *args, **kwargs)
        self._futures.append(future)
        return future


def deadline_executor() -> Any:
    """The executor ``Agent._execute_with_timeout`` runs an execution with:
    :class:`_DeadlineExecutor` with the tasks component on, else a new
    ``concurrent.futures.ThreadPoolExecutor`` as upstream makes."""
    if not _on_rust():
        return concurrent.futures.ThreadPoolExecutor()
    return _DeadlineExecutor()
