"""Shared fixtures of the fork's own tests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crewai_rust._backend import COMPONENTS, MASTER_VARIABLE, component_variable

REPO_ROOT = Path(__file__).resolve().parent.parent

_SWITCHES = [MASTER_VARIABLE] + [component_variable(component) for component in COMPONENTS]


@pytest.fixture(autouse=True)
def clean_switches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the defaults: no switch set, no runtime override."""
    import crewai_rust

    for name in _SWITCHES:
        monkeypatch.delenv(name, raising=False)
    crewai_rust.clear_rust_component_overrides()
    yield
    crewai_rust.clear_rust_component_overrides()


@pytest.fixture(params=["python", "rust"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test under both backends, as the tox upstream envs do."""
    monkeypatch.setenv("CREWAI_RUST", "0" if request.param == "python" else "1")
    return request.param


def run_python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (for import-time behaviour and crashes)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _SWITCHES}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
        cwd=cwd or REPO_ROOT.parent, timeout=300, check=False,
    )


def run_in_threads(work: Callable[[int], None], count: int) -> None:
    """Run ``work(0)`` ... ``work(count - 1)`` on real threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # noqa: BLE001 - reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
