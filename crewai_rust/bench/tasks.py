"""Workloads of the tasks component: crewai's own cost of running tasks and flows.

* tasks.crew_sequential: ``Crew.kickoff()`` of a sequential crew whose agents
  use an instant LLM, per task, in process CPU time (the steps run on worker
  threads upstream).
* flow.dispatch: a user ``Flow`` of 200 sync steps mixing ``@listen``,
  ``@router``, ``or_`` and ``and_``, per step.

The upstream side runs every component on upstream's code (what users of
crewai 1.15.30 run), the Rust side every component on the fork's. The LLM is
:class:`InstantLLM`: it answers at once but does on crewai's side what a
provider's ``call()`` does (call events, hooks, token tracking).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from crewai_rust._backend import every_component_forced
from crewai_rust.bench import Case, quiet_runtime, workload

_FINAL_ANSWER = "Thought: I now know the final answer\nFinal Answer: done"


def instant_llm() -> Any:
    """An LLM that answers at once, doing crewai's part of a provider call."""
    from crewai.events.types.llm_events import LLMCallType
    from crewai.llms.base_llm import BaseLLM, llm_call_context

    class InstantLLM(BaseLLM):
        answer: str = _FINAL_ANSWER

        def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
                 from_task: Any = None, from_agent: Any = None, response_model: Any = None) -> Any:
            with llm_call_context():
                self._emit_call_started_event(messages=messages, tools=tools, callbacks=callbacks,
                                              available_functions=available_functions,
                                              from_task=from_task, from_agent=from_agent)
                formatted = self._format_messages(messages)
                self._invoke_before_llm_call_hooks(formatted, from_agent)
                usage = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
                self._track_token_usage_internal(usage)
                content = self._invoke_after_llm_call_hooks(formatted, self.answer, from_agent)
                self._emit_call_completed_event(response=content, call_type=LLMCallType.LLM_CALL,
                                                from_task=from_task, from_agent=from_agent,
                                                messages=formatted, usage=usage)
                return content

        def supports_function_calling(self) -> bool:
            return False

        def get_context_window_size(self) -> int:
            return 128_000

    return InstantLLM(model="instant")


def _crew(tasks: int, agents: int) -> Any:
    from crewai import Agent, Crew, Task

    llm = instant_llm()
    members = [Agent(role=f"role {i}", goal="goal", backstory="backstory", llm=llm, verbose=False)
               for i in range(agents)]
    work = [Task(description=f"step {i}", expected_output="done", agent=members[i % agents]) for i in range(tasks)]
    return Crew(agents=members, tasks=work, verbose=False)


def _kickoff(tasks: int, agents: int, backend: str) -> Callable[[], Any]:
    def run() -> Any:
        with every_component_forced(backend):  # type: ignore[arg-type]
            output = _crew(tasks, agents).kickoff()
        return [(t.agent, t.raw) for t in output.tasks_output]

    return run


def _same(expected: Any, got: Any) -> None:
    assert expected == got, f"results differ: {expected!r} vs {got!r}"


@workload("tasks.crew_sequential", component="tasks",
          description="Crew.kickoff() of a sequential crew with an instant LLM (events, hooks, token "
                      "tracking as a provider call): process CPU per task, every component on upstream "
                      "vs on the fork")
def crew_sequential_cases(quick: bool) -> Iterator[Case]:
    sizes = ((1, 1), (10, 1)) if quick else ((1, 1), (50, 1), (50, 5))
    with quiet_runtime():
        for tasks, agents in sizes:
            label = f"{tasks} task{'s' if tasks > 1 else ''}, {agents} agent{'s' if agents > 1 else ''}"
            yield Case(label, _kickoff(tasks, agents, "python"), _kickoff(tasks, agents, "rust"), _same,
                       cpu_time=True, units_per_call=tasks)


def dispatch_flow_class(steps: int) -> type:
    """A Flow of ``steps`` sync steps: a chain where every tenth step is a
    router (the next listens to its outcome), every tenth from the fifth
    joins the two before it with ``and_``, every tenth from the seventh
    listens to ``or_(previous, an event that never comes)``."""
    from crewai.flow.flow import Flow, and_, listen, or_, router, start

    def step(i: int) -> Callable[[Any], int]:
        def method(self: Any) -> int:
            return i

        method.__name__ = f"m{i}"
        return method

    def outcome(i: int) -> Callable[[Any], str]:
        def method(self: Any) -> str:
            return f"go{i}"

        method.__name__ = f"m{i}"
        return method

    namespace: dict[str, Any] = {"m0": start()(step(0))}
    previous = "m0"
    for i in range(1, steps):
        if i % 10 == 0:
            namespace[f"m{i}"] = router(previous)(outcome(i))
            previous = f"go{i}"
            continue
        if i % 10 == 5:
            condition: Any = and_(f"m{i - 1}", f"m{i - 2}")
        elif i % 10 == 7:
            condition = or_(previous, "never")
        else:
            condition = previous
        namespace[f"m{i}"] = listen(condition)(step(i))
        previous = f"m{i}"
    return type(f"DispatchFlow{steps}", (Flow,), namespace)


def _run_flow(flow_class: type, backend: str) -> Callable[[], Any]:
    from crewai.events.listeners.tracing.utils import _tui_mode, set_tui_mode

    def run() -> Any:
        # No console panel per step (as under crewai's TUI), on both sides: rendering two rich
        # panels per step costs more than the step and is the same code on both.
        token = set_tui_mode(True)
        try:
            with every_component_forced(backend):  # type: ignore[arg-type]
                flow = flow_class()
                flow.kickoff()
        finally:
            _tui_mode.reset(token)
        return list(flow.method_outputs)

    return run


@workload("flow.dispatch", component="tasks",
          description="Flow.kickoff() of a user flow of 200 sync steps mixing @listen, @router, or_ and "
                      "and_ (console panels off on both sides): process CPU per step, every component "
                      "on upstream vs on the fork")
def dispatch_cases(quick: bool) -> Iterator[Case]:
    steps = 200
    flow_class = dispatch_flow_class(steps)

    def check(expected: Any, got: Any) -> None:
        _same(expected, got)
        assert len(got) == steps, f"{len(got)} of {steps} steps ran"

    with quiet_runtime():
        yield Case(f"{steps} steps", _run_flow(flow_class, "python"), _run_flow(flow_class, "rust"), check,
                   cpu_time=True, units_per_call=steps)
