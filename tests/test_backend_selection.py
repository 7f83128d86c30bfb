"""Backend switches: environment, runtime configuration, fallbacks, status."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import run_python

import crewai_rust
from crewai_rust import _backend


def test_default_is_auto_and_unimplemented_components_stay_on_upstream() -> None:
    status = crewai_rust.component_status()
    assert set(status) == set(crewai_rust.COMPONENTS)
    for component, row in status.items():
        assert row.requested == "auto"
        expected = "rust" if component in crewai_rust.IMPLEMENTED_COMPONENTS else "python"
        assert row.backend == expected, row


@pytest.mark.parametrize("variable", ["CREWAI_RUST", "CREWAI_RUST_MEMORY", "CREWAI_RUST_DATABASE"])
def test_invalid_value_names_the_variable_and_accepted_values(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "maybe")
    with pytest.raises(crewai_rust.ConfigurationError) as info:
        crewai_rust.component_status()
    assert variable in str(info.value)
    assert "'maybe'" in str(info.value)
    assert "auto, 1, 0" in str(info.value)


@pytest.mark.parametrize("value", ["0", "false", "OFF", " no "])
def test_master_off_means_python_everywhere_even_if_a_component_asks_for_rust(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CREWAI_RUST", value)
    monkeypatch.setenv("CREWAI_RUST_MEMORY", "1")
    for row in crewai_rust.component_status().values():
        assert row.backend == "python"
        assert "CREWAI_RUST=0" in row.reason


def test_master_on_with_native_module_present() -> None:
    assert crewai_rust.RUST_AVAILABLE, "the tests run against the built wheel"
    status = run_python("import crewai_rust; print(crewai_rust.component_status()['memory'].reason)",
                        env={"CREWAI_RUST": "1"})
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip()


def test_component_off_is_reported_with_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREWAI_RUST_TOOLS", "0")
    row = crewai_rust.component_status()["tools"]
    assert (row.backend, row.requested) == ("python", "off")
    assert "CREWAI_RUST_TOOLS=0" in row.reason


def _one_component_unimplemented(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every component is implemented in this build: pretend one is not, as a
    build without it (or a new component) would be."""
    from crewai_rust import _backend

    missing = [c for c in crewai_rust.COMPONENTS if c not in _backend.IMPLEMENTED_COMPONENTS] or ["tools"]
    monkeypatch.setattr(_backend, "IMPLEMENTED_COMPONENTS", _backend.IMPLEMENTED_COMPONENTS - {missing[0]})
    return missing[0]


def test_requiring_an_unimplemented_component_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = _one_component_unimplemented(monkeypatch)
    monkeypatch.setenv(f"CREWAI_RUST_{missing.upper()}", "1")
    with pytest.raises(crewai_rust.ComponentNotImplementedError, match=missing):
        crewai_rust.component_status()


def test_configure_rust_components_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREWAI_RUST_TASKS", "1" if "tasks" in crewai_rust.IMPLEMENTED_COMPONENTS else "auto")
    result = crewai_rust.configure_rust_components(tasks=False, memory="auto")
    assert result["tasks"].backend == "python"
    assert result["tasks"].source == "configure_rust_components()"
    assert crewai_rust.use_rust("tasks") is False
    crewai_rust.clear_rust_component_overrides()
    assert crewai_rust.component_status()["tasks"].source.startswith("CREWAI_RUST_TASKS=")


def test_configure_rust_components_rejects_bad_values_and_keeps_previous_settings() -> None:
    crewai_rust.configure_rust_components(database=False)
    with pytest.raises(crewai_rust.ConfigurationError, match=r"database"):
        crewai_rust.configure_rust_components(database="sometimes")
    assert crewai_rust.component_status()["database"].requested == "off"


def test_configure_requiring_missing_rust_rolls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = _one_component_unimplemented(monkeypatch)
    with pytest.raises(crewai_rust.ComponentNotImplementedError):
        crewai_rust.configure_rust_components(**{missing: True})
    assert crewai_rust.component_status()[missing].requested == "auto"


def test_unknown_component() -> None:
    with pytest.raises(ValueError, match="unknown component 'gpu'"):
        _backend.resolve("gpu")


_NATIVE_BLOCKED = "import sys; sys.modules['crewai_rust._native'] = None\n"


def test_missing_native_module_falls_back_with_one_log_line() -> None:
    code = _NATIVE_BLOCKED + (
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "import crewai_rust\n"
        "assert crewai_rust.RUST_AVAILABLE is False\n"
        "assert crewai_rust.build_info() is None\n"
        "rows = crewai_rust.component_status()\n"
        "assert all(r.backend == 'python' for r in rows.values()), rows\n"
        "assert all('native module missing' in r.reason for r in rows.values()), rows\n"
        "crewai_rust.component_status()\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "native module unavailable" in line]
    assert len(lines) == 1, result.stderr


def test_missing_native_module_with_rust_required_is_an_error() -> None:
    code = _NATIVE_BLOCKED + (
        "import crewai_rust\n"
        "try:\n"
        "    crewai_rust.component_status()\n"
        "except crewai_rust.NativeModuleMissingError as exc:\n"
        "    print('ERR', exc)\n"
    )
    result = run_python(code, env={"CREWAI_RUST": "1"})
    assert result.returncode == 0, result.stderr
    assert "ERR CREWAI_RUST=1 requires the native module crewai_rust._native" in result.stdout


def test_memory_storage_hook_falls_back_when_native_is_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = _NATIVE_BLOCKED + (
        "from crewai.memory.unified_memory import Memory\n"
        "from crewai.memory.storage.lancedb_storage import LanceDBStorage\n"
        f"m = Memory(storage={str(tmp_path / 'mem')!r})\n"
        "assert isinstance(m._storage, LanceDBStorage), type(m._storage)\n"
        "print('ok')\n"
    )
    result = run_python(code, env={"CREWAI_STORAGE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return run_python(f"import sys; from crewai_rust.cli import main; sys.exit(main({list(args)!r}))", env=env)


def test_status_lists_every_component_and_the_build() -> None:
    result = _cli("status")
    assert result.returncode == 0, result.stderr
    for component in crewai_rust.COMPONENTS:
        assert component in result.stdout
    info = crewai_rust.build_info()
    assert info is not None
    assert f"crewai_rust._native {info['version']}" in result.stdout


def test_status_json_and_verbose() -> None:
    result = _cli("status", "--json", env={"CREWAI_RUST_TOOLS": "0"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {row["component"]: row for row in report["components"]}
    assert set(rows) == set(crewai_rust.COMPONENTS)
    assert rows["tools"]["backend"] == "python"
    assert rows["tools"]["source"] == "CREWAI_RUST_TOOLS=0"
    assert report["native"]["available"] is True
    assert set(report["native"]["build"]) >= {"version", "git_sha", "profile", "target", "features"}
    verbose = _cli("status", "--verbose")
    assert "CREWAI_RUST_DATABASE=(unset)" in verbose.stdout


def test_status_require() -> None:
    assert _cli("status", "--require", "rust", env={"CREWAI_RUST": "1"}).returncode == 0
    assert _cli("status", "--require", "python", env={"CREWAI_RUST": "0"}).returncode == 0
    refused = _cli("status", "--require", "rust", env={"CREWAI_RUST": "0"})
    assert refused.returncode == 1
    assert "CREWAI_RUST=0" in refused.stderr
    blocked = run_python(
        _NATIVE_BLOCKED + "import sys; from crewai_rust.cli import main; sys.exit(main(['status', '--require', 'rust']))"
    )
    assert blocked.returncode == 1
    assert "native module missing" in blocked.stderr


def test_status_reports_invalid_switch() -> None:
    result = _cli("status", env={"CREWAI_RUST_MEMORY": "yes please"})
    assert result.returncode == 2
    assert "CREWAI_RUST_MEMORY='yes please' is not valid" in result.stderr


def test_python_dash_m_entry_point() -> None:
    result = run_python("import runpy, sys; sys.argv = ['crewai_rust', 'status']; runpy.run_module('crewai_rust', run_name='__main__')")
    assert result.returncode == 0, result.stderr
    assert "memory" in result.stdout
    assert sys.executable


def test_the_documented_utils_path_imports_the_same_objects() -> None:
    import crewai_rust
    from crewai_rust.utils import configure_rust_components, use_rust

    assert configure_rust_components is crewai_rust.configure_rust_components
    assert use_rust is crewai_rust.use_rust


def test_switch_reads_follow_the_environment_live(monkeypatch: pytest.MonkeyPatch) -> None:
    """However the switches are read (directly or through os.environ.get), a
    change through os.environ or putenv-backed monkeypatching is seen at once."""
    from crewai_rust._backend import _switch_reader

    read = _switch_reader("CREWAI_RUST_SERIALIZATION")
    monkeypatch.delenv("CREWAI_RUST_SERIALIZATION", raising=False)
    assert read() is None
    monkeypatch.setenv("CREWAI_RUST_SERIALIZATION", "0")
    assert read() not in (None, "", b"")
    first = read()
    monkeypatch.setenv("CREWAI_RUST_SERIALIZATION", "1")
    assert read() != first
    monkeypatch.delenv("CREWAI_RUST_SERIALIZATION")
    assert read() is None
