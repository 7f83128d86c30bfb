"""`pip install .` from a fresh clone materializes crewai/; the fork's sdist builds without a download."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO_ROOT


def _build_env(sdist_cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["CREWAI_FORK_SDIST_CACHE"] = str(sdist_cache)
    # A dev build is enough to prove the packaging; the shared target dir keeps
    # compiled crates between runs.
    env["MATURIN_PEP517_ARGS"] = "--profile dev"
    env["CARGO_TARGET_DIR"] = str(REPO_ROOT / "rust" / "target" / "clone-builds")
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200, check=False)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.skipif(not (REPO_ROOT / ".git").exists(), reason="needs the project's git checkout to clone")
def test_fresh_clone_builds_a_wheel_and_an_sdist_that_builds_offline(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone)], tmp_path, dict(os.environ))
    assert not (clone / "crewai").exists()

    # The clone shares this checkout's sdist cache (the pinned sdist is verified by sha256 either way).
    env = _build_env(REPO_ROOT / ".upstream" / "cache")
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "-w", str(wheels), str(clone)], tmp_path, env)
    (wheel,) = wheels.glob("crewai-*.whl")
    assert "+rust." in wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "crewai/memory/unified_memory.py" in names
    assert any(n.startswith("crewai_rust/_native") for n in names)
    assert (clone / "crewai" / "__init__.py").is_file(), "the build materialized crewai/"

    sdists = tmp_path / "sdists"
    _run([sys.executable, "-m", "maturin", "sdist", "--out", str(sdists)], clone, env)
    (sdist,) = sdists.glob("crewai-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert any(m.endswith("crewai/memory/unified_memory.py") for m in members)
    assert not any("__pycache__" in m for m in members)
    (unpacked,) = (tmp_path / "unpacked").iterdir()

    # No sdist cache and no package index: a build that tried to download would fail.
    offline = _build_env(tmp_path / "empty-cache")
    offline["PIP_NO_INDEX"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "-w", str(tmp_path / "from-sdist"), str(unpacked)], tmp_path, offline)
    (rebuilt,) = (tmp_path / "from-sdist").glob("crewai-*.whl")
    assert "crewai/memory/unified_memory.py" in zipfile.ZipFile(rebuilt).namelist()
    assert not (tmp_path / "empty-cache").exists() or not any((tmp_path / "empty-cache").iterdir())
