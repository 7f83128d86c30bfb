"""A persisted flow run in a process of its own, for tests/test_tasks.py.

``python resumable_flow.py DB BACKEND [STATE_ID]``: kicks off :class:`Resumable`
with every component on BACKEND (``python`` or ``rust``) and its state
persisted to the SQLite file DB, resuming the state STATE_ID when given. The
flow's third step fails on a first run and succeeds on a resumed one. Prints a
JSON line: the steps this process ran, the state it ended with, and the error
that ended the kickoff, if any.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["CREWAI_TRACING_ENABLED"] = "false"
# No telemetry export: at exit it would wait about 10 s for a collector CI cannot reach.
os.environ["OTEL_SDK_DISABLED"] = "true"

from crewai.flow.flow import Flow, FlowState, listen, router, start
from crewai.flow.persistence import persist
from crewai.flow.persistence.sqlite import SQLiteFlowPersistence
from pydantic import Field

from crewai_rust._backend import every_component_forced

ran: list[str] = []


class Progress(FlowState):
    done: list[str] = Field(default_factory=list)
    runs: int = 0


@persist()
class Resumable(Flow[Progress]):
    @start()
    def begin(self) -> None:
        ran.append("begin")
        self.state.runs += 1
        if "begin" not in self.state.done:
            self.state.done.append("begin")

    @listen(begin)
    def fetch(self) -> None:
        ran.append("fetch")
        if "fetch" not in self.state.done:
            self.state.done.append("fetch")

    @router(fetch)
    def decide(self) -> str:
        ran.append("decide")
        if self.state.runs == 1:
            raise RuntimeError("the first run fails after fetch")
        return "finished_fetching"

    @listen("finished_fetching")
    def finish(self) -> None:
        ran.append("finish")
        self.state.done.append("finish")


def main(db: str, backend: str, state_id: str | None) -> None:
    error = None
    with every_component_forced(backend):  # type: ignore[arg-type]
        flow = Resumable(persistence=SQLiteFlowPersistence(db))
        try:
            flow.kickoff(inputs={"id": state_id} if state_id else None)
        except RuntimeError as exc:
            error = str(exc)
    print(json.dumps({"ran": ran, "state": flow.state.model_dump(mode="json"), "error": error}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
