"""Tasks component, async part: async tasks on a bounded native pool.

With the tasks component on, the fork's hooks send here:

* **Async tasks** (``Task.execute_async``, ``Crew.kickoff_async``):
  :func:`submit_task_execution` and :func:`pooled_kickoff` run them on
  :class:`RustTaskExecutor`, whose worker threads the native module creates
  (bounded by :func:`default_max_concurrency`, reused, ended after a minute
  idle, made anew in a forked child). A job submitted from a running job may
  exceed the bound, so nested crews never wait behind their parent. A
  pooled future resolves whatever the task raises, ``BaseException``
  included (upstream's kickoff then waited forever).
* **One agent, several tasks at once** (crewAI #7332):
  :func:`executor_per_execution` makes ``Agent.agent_executor`` answer the
  executor of the async task running now; the first claims the agent's own.
* **The deadline** (``max_execution_time``): :func:`deadline_executor` runs
  the execution under a :class:`Cancellation` that stops it at its running
  step when the time is up, and waits for that step as upstream's ``with``
  block does.

Each hook returns None when the component resolves to upstream Python.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from crewai_rust._backend import decider, load_native

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "Cancellation", "RustTaskExecutor", "deadline_executor", "default_max_concurrency", "default_task_executor",
    "execute_concurrent_tasks", "executor_per_execution", "needs_own_executor", "pooled_kickoff",
    "submit_task_execution", "with_own_executors",
]

T = TypeVar("T")

_on_rust = decider("tasks")


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

    def __init__(self, max_concurrency: int | None = None, *, stack_size: int = 8 * 1024 * 1024,
                 thread_name: str = "crewai-task") -> None:
        native = load_native()
        if native is None:
            raise RuntimeError("RustTaskExecutor needs crewai_rust's native module, which did not load")
        self.max_concurrency = default_max_concurrency() if max_concurrency is None else max_concurrency
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {self.max_concurrency}")
        self._stack_size = stack_size
        self._thread_name = thread_name  # the OS name of its threads (py-spy, top), with a number
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
                self._pool = load_native().TaskPool(self.max_concurrency, stack_size=self._stack_size,
                                                    name=self._thread_name)
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
