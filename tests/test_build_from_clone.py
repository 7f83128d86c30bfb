"""The user's install paths, from a fresh clone with pip's defaults, and the fork's offline sdist.

Each pip command runs as a user would run it: a new venv, pip's default isolated
build (pip installs maturin into it from the index), an empty pip cache and an
empty sdist cache (a fresh clone has no ``.upstream/``), so the build hook must
download the pinned upstream sdist itself. The one thing shared with this
checkout is cargo's target directory, so the crates compiled for the fork env
are not compiled again: it changes how long cargo takes, not what is built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(
    not (REPO_ROOT / ".git").exists(), reason="needs the project's git checkout to clone"
)

_CARGO_TARGET = REPO_ROOT / "rust" / "target"


def _user_env(tmp: Path) -> dict[str, str]:
    """The environment of a user on this machine: no fork-specific variable, empty caches."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CREWAI_", "PIP_NO_", "PIP_CACHE", "VIRTUAL_ENV", "PYTHON"))}
    env["PIP_CACHE_DIR"] = str(tmp / "pip-cache")
    env["CARGO_TARGET_DIR"] = str(_CARGO_TARGET)
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".tox" not in p
    )
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500, check=False)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def _fresh_clone(tmp: Path) -> Path:
    clone = tmp / "clone"
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone)], tmp, dict(os.environ))
    assert not (clone / "crewai").exists() and not (clone / ".upstream").exists()
    return clone


def _fresh_venv(tmp: Path, env: dict[str, str]) -> Path:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp, env)
    return venv / "bin" / "python"


def _assert_fork_installed(python: Path, tmp: Path, env: dict[str, str]) -> None:
    """The installed fork imports crewai and loads its native module, from a neutral directory."""
    neutral = tmp / "elsewhere"
    neutral.mkdir(exist_ok=True)
    _run([str(python), "-m", "crewai_rust", "status", "--require", "rust"], neutral, env)
    code = "import crewai, crewai_rust._native; print(crewai.__version__, crewai.Crew.__name__)"
    out = _run([str(python), "-c", code], neutral, env).stdout
    assert "+rust." in out and "Crew" in out, out


def test_pip_install_from_a_fresh_clone_with_pip_defaults(tmp_path: Path) -> None:
    """`pip install <clone>`: isolated build, dependencies from the index, nothing cached."""
    clone = _fresh_clone(tmp_path)
    env = _user_env(tmp_path)
    python = _fresh_venv(tmp_path, env)
    _run([str(python), "-m", "pip", "install", str(clone)], tmp_path, env)
    assert (clone / "crewai" / "__init__.py").is_file(), "the build materialized crewai/"
    pin = json.loads((clone / "patches" / "pin.json").read_text())
    assert (clone / ".upstream" / "cache" / f"crewai-{pin['version']}.tar.gz").is_file(), "downloaded by the hook"
    _assert_fork_installed(python, tmp_path, env)


def test_pip_install_git_url_with_pip_defaults(tmp_path: Path) -> None:
    """`pip install git+<url>`: pip clones, then builds in isolation; the fork's deps are installed too."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    env = _user_env(tmp_path)
    python = _fresh_venv(tmp_path, env)
    _run([str(python), "-m", "pip", "install", f"git+file://{REPO_ROOT}@{head}"], tmp_path, env)
    _assert_fork_installed(python, tmp_path, env)


def test_pip_wheel_from_a_fresh_clone_then_the_sdist_builds_offline(tmp_path: Path) -> None:
    clone = _fresh_clone(tmp_path)
    env = _user_env(tmp_path)
    python = _fresh_venv(tmp_path, env)
    wheels = tmp_path / "wheels"
    # pip's defaults but --no-deps: `pip wheel` would otherwise also copy every
    # dependency's wheel, which the install tests above already fetch.
    _run([str(python), "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(clone)], tmp_path, env)
    (wheel,) = wheels.glob("crewai-*.whl")
    assert "+rust." in wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "crewai/memory/unified_memory.py" in names
    assert any(n.startswith("crewai_rust/_native") for n in names)

    # The fork's own sdist carries the patched tree: no sdist cache and no package
    # index, so a build that tried to download anything would fail.
    _run([str(python), "-m", "pip", "install", "--quiet", "maturin>=1.9,<2"], tmp_path, env)
    sdists = tmp_path / "sdists"
    _run([str(python), "-m", "maturin", "sdist", "--out", str(sdists)], clone, env)
    (sdist,) = sdists.glob("crewai-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert any(m.endswith("crewai/memory/unified_memory.py") for m in members)
    assert not any("__pycache__" in m for m in members)
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    offline = dict(env, PIP_NO_INDEX="1", CREWAI_FORK_SDIST_CACHE=str(tmp_path / "empty-cache"))
    _run([str(python), "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "-w", str(tmp_path / "from-sdist"), str(unpacked)], tmp_path, offline)
    (rebuilt,) = (tmp_path / "from-sdist").glob("crewai-*.whl")
    assert "crewai/memory/unified_memory.py" in zipfile.ZipFile(rebuilt).namelist()
    assert not (tmp_path / "empty-cache").exists() or not any((tmp_path / "empty-cache").iterdir())
