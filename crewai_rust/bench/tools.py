"""Workloads of the tools component.

* tools.schemas: what a task spends on its agent's tool schemas with 100
  tools: the native path's tool list for the LLM
  (``convert_tools_to_openai_schema``) and the ReAct prompt's tool block
  (``render_text_description_and_args``), once each, as every task does.

(``tools.call_native`` and ``tools.call_react`` live with the tasks
workloads: they share its fake LLMs.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from crewai_rust._backend import forced_backend
from crewai_rust.bench import Case, workload
from crewai_rust.bench.tasks import other_tools


def _schema_work(tools: list[Any], backend: str) -> Callable[[], Any]:
    def run() -> Any:
        from crewai.utilities.agent_utils import (
            convert_tools_to_openai_schema,
            render_text_description_and_args,
        )
        from crewai.utilities.string_utils import sanitize_tool_name

        with forced_backend("tools", backend):  # type: ignore[arg-type]
            structured = [tool.to_structured_tool() for tool in tools]
            for tool in structured:  # what the agent's executor keeps: name sanitized
                tool.name = sanitize_tool_name(tool.name)
            openai_tools, _, _ = convert_tools_to_openai_schema(tools)
            prompt_block = render_text_description_and_args(structured)
        return openai_tools, prompt_block

    return run


@workload("tools.schemas", component="tools",
          description="A task's tool-schema work with 100 tools (each its own argument model): the LLM's tool "
                      "list on the native path and the ReAct prompt's tool block, upstream vs the fork")
def schemas_cases(quick: bool) -> Iterator[Case]:
    count = 20 if quick else 100
    tools = other_tools(count)

    def check(expected: Any, got: Any) -> None:
        assert expected == got, "the tool schemas differ"

    yield Case(f"{count} tools", _schema_work(tools, "python"), _schema_work(tools, "rust"), check)
