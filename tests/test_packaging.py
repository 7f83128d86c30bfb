"""The wheel: crewai 1.15.30+rust.N with upstream's requirements, crewai and crewai_rust inside."""

from __future__ import annotations

import email
import importlib.metadata
import re
from pathlib import Path

from conftest import REPO_ROOT
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def _normalized(requirements: list[str]) -> set[tuple[str, frozenset[str], frozenset[str], str]]:
    result = set()
    for text in requirements:
        req = Requirement(text)
        result.add((
            canonicalize_name(req.name),
            frozenset(req.extras),
            frozenset(str(spec) for spec in req.specifier),
            str(req.marker) if req.marker else "",
        ))
    return result


def _upstream_metadata() -> email.message.Message:
    pkg_info = REPO_ROOT / ".upstream" / "PKG-INFO"
    assert pkg_info.is_file(), "run `python -m patches apply` first"
    return email.message_from_string(pkg_info.read_text())


def test_installed_distribution_is_the_fork_with_upstreams_requirements() -> None:
    upstream = _upstream_metadata()
    installed = importlib.metadata.metadata("crewai")
    assert re.fullmatch(rf"{re.escape(upstream['Version'])}\+rust\.\d+", installed["Version"])
    assert _normalized(installed.get_all("Requires-Dist") or []) == _normalized(upstream.get_all("Requires-Dist") or [])
    assert set(installed.get_all("Provides-Extra") or []) == set(upstream.get_all("Provides-Extra") or [])
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(installed["Requires-Python"]) == SpecifierSet(upstream["Requires-Python"])


def test_wheel_holds_patched_crewai_and_crewai_rust() -> None:
    import crewai

    import crewai_rust

    files = {str(f) for f in importlib.metadata.files("crewai") or []}
    assert "crewai/memory/unified_memory.py" in files
    assert any(f.startswith("crewai_rust/_native") for f in files)
    assert "crewai_rust/_native.pyi" in files and "crewai_rust/py.typed" in files
    assert not any("__pycache__" in f and f.endswith(".pyc") and "dist-info" in f for f in files)
    source = Path(crewai.__file__).parent.joinpath("memory", "unified_memory.py").read_text()
    assert "crewai_rust.memory import storage_for_spec" in source
    # __version__ agrees with the installed metadata (upstream's test_version checks it).
    assert crewai.__version__ == importlib.metadata.version("crewai")
    assert crewai.__version__.startswith(_upstream_metadata()["Version"] + "+rust.")
    assert crewai_rust.RUST_AVAILABLE


def test_console_script_is_upstreams() -> None:
    scripts = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="console_scripts")
               if ep.dist is not None and ep.dist.name == "crewai"}
    assert scripts == {"crewai": "crewai_cli.cli:crewai"}
