"""The patch-queue tool: apply, export, check, rebase, on small synthetic sdists and on the real pin."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
from conftest import REPO_ROOT

sys.path.append(str(REPO_ROOT))  # appended: the repo must not shadow the installed crewai_rust
from patches import tool

PKG_INFO = """Metadata-Version: 2.4
Name: tiny
Version: {version}
Requires-Python: >=3.10
Requires-Dist: click>=8
Provides-Extra: fast
Requires-Dist: orjson>=3; extra == 'fast'

readme
"""

MODULE_V1 = "".join(f"line {i}\n" for i in range(1, 31))


def make_sdist(cache: Path, version: str, module: str) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    top = f"tiny-{version}"
    files = {
        f"{top}/PKG-INFO": PKG_INFO.format(version=version),
        f"{top}/src/tiny/__init__.py": f'__version__ = "{version}"\n',
        f"{top}/src/tiny/mod.py": module,
        f"{top}/tests/test_tiny.py": "def test_ok():\n    assert True\n",
    }
    with tarfile.open(cache / f"tiny-{version}.tar.gz", "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture()
def repo(tmp_path: Path) -> tool.Layout:
    root = tmp_path / "repo"
    (root / "patches").mkdir(parents=True)
    cache = tmp_path / "cache"
    make_sdist(cache, "1.0", MODULE_V1)
    sha = tool._sha256(cache / "tiny-1.0.tar.gz")
    (root / "patches" / "pin.json").write_text(json.dumps({"package": "tiny", "version": "1.0", "sha256": sha}))
    (root / "patches" / "series").write_text("")
    return tool.Layout(root=root, patches_dir=root / "patches", cache_dir=cache)


def edit(layout: tool.Layout, old: str, new: str) -> None:
    path = layout.root / "tiny" / "mod.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def add_patch(layout: tool.Layout, old: str = "line 10\n", new: str = "line 10 hooked\n") -> str:
    edit(layout, old, new)
    (name,) = tool.export(layout, new="tiny: hook line 10", why="Because the fork needs a hook here.")
    return name


def test_apply_materializes_and_is_idempotent(repo: tool.Layout) -> None:
    assert tool.apply(repo) is True
    assert (repo.root / "tiny" / "mod.py").read_text() == MODULE_V1
    assert (repo.root / "upstream-tests" / "tiny" / "tests" / "test_tiny.py").is_file()
    assert tool.apply(repo) is False
    # Byte caches and the harness' own files in the generated trees are not edits.
    (repo.root / "tiny" / "__pycache__").mkdir()
    (repo.root / "tiny" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"x")
    assert tool.pending_edits(repo, tool.read_pin(repo)) == []


def make_fixtures_sdist(cache: Path, version: str) -> str:
    top = f"tiny_files-{version}"
    with tarfile.open(cache / f"tiny-files-{version}.tar.gz", "w:gz") as tar:
        for name, data in {f"{top}/tests/fixtures/pic.png": b"\x89PNG fake", f"{top}/src/x.py": b""}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return tool._sha256(cache / f"tiny-files-{version}.tar.gz")


def _pin_fixtures(repo: tool.Layout, sha: str) -> None:
    pin = json.loads(repo.pin_file.read_text())
    pin["fixtures"] = {"package": "tiny-files", "version": "1.0", "sha256": sha,
                       "source": "tests/fixtures", "target": "tiny-files/tests/fixtures"}
    repo.pin_file.write_text(json.dumps(pin))


def test_apply_materializes_pinned_test_fixtures_beside_the_tests(repo: tool.Layout) -> None:
    _pin_fixtures(repo, make_fixtures_sdist(repo.cache_dir, "1.0"))
    tool.apply(repo)
    fixture = repo.root / "upstream-tests" / "tiny-files" / "tests" / "fixtures" / "pic.png"
    assert fixture.read_bytes() == b"\x89PNG fake"
    # Where the tests look for it: <tests>/../../tiny-files/tests/fixtures.
    tests_dir = repo.root / "upstream-tests" / "tiny" / "tests"
    assert (tests_dir.parent.parent / "tiny-files" / "tests" / "fixtures" / "pic.png").exists()
    assert tool.pending_edits(repo, tool.read_pin(repo)) == []


def test_fixtures_sha256_mismatch_is_refused(repo: tool.Layout) -> None:
    make_fixtures_sdist(repo.cache_dir, "1.0")
    _pin_fixtures(repo, "0" * 64)
    with pytest.raises(tool.PatchToolError, match="sha256 mismatch for tiny-files-1.0.tar.gz"):
        tool.apply(repo)


def test_local_edits_are_protected_until_forced(repo: tool.Layout) -> None:
    tool.apply(repo)
    edit(repo, "line 3\n", "line three\n")
    (repo.root / "tiny" / "new_module.py").write_text("x = 1\n")
    with pytest.raises(tool.PatchToolError, match="local edit"):
        tool.apply(repo)
    assert "line three" in (repo.root / "tiny" / "mod.py").read_text()
    tool.apply(repo, force=True)
    assert (repo.root / "tiny" / "mod.py").read_text() == MODULE_V1
    assert not (repo.root / "tiny" / "new_module.py").exists()


def test_unmanaged_tree_is_not_overwritten(repo: tool.Layout) -> None:
    (repo.root / "tiny").mkdir()
    (repo.root / "tiny" / "__init__.py").write_text("mine\n")
    with pytest.raises(tool.PatchToolError, match="not managed"):
        tool.apply(repo)
    assert (repo.root / "tiny" / "__init__.py").read_text() == "mine\n"


def test_export_new_patch_then_reapply_reproduces_it(repo: tool.Layout) -> None:
    tool.apply(repo)
    (repo.root / "tiny" / "added.py").write_text("NEW = True\n")
    name = add_patch(repo)
    assert tool.read_series(repo) == [name]
    text = (repo.patches_dir / name).read_text()
    assert text.startswith("From 0000000000000000000000000000000000000000 ")
    assert "Because the fork needs a hook here." in text
    assert "+line 10 hooked" in text and "tiny/added.py" in text
    assert tool.check(repo) == []
    tool.apply(repo, force=True)
    assert "line 10 hooked" in (repo.root / "tiny" / "mod.py").read_text()
    assert (repo.root / "tiny" / "added.py").read_text() == "NEW = True\n"
    # Exporting an unchanged queue rewrites identical bytes.
    before = (repo.patches_dir / name).read_bytes()
    tool.export(repo)
    assert (repo.patches_dir / name).read_bytes() == before


def test_export_needs_a_reason_and_an_intent(repo: tool.Layout) -> None:
    tool.apply(repo)
    edit(repo, "line 2\n", "line two\n")
    with pytest.raises(tool.PatchToolError, match="--new SUBJECT --why TEXT"):
        tool.export(repo)
    with pytest.raises(tool.PatchToolError, match="needs --why"):
        tool.export(repo, new="subject only")


def test_export_into_folds_edits_into_an_existing_patch(repo: tool.Layout) -> None:
    tool.apply(repo)
    first = add_patch(repo)
    edit(repo, "line 20\n", "line 20 second\n")
    tool.export(repo, new="tiny: second hook", why="A second reason.")
    edit(repo, "line 11\n", "line 11 also\n")
    names = tool.export(repo, into="1")
    assert names[0] == first and len(names) == 2
    text = (repo.patches_dir / first).read_text()
    assert "+line 11 also" in text and "line 20 second" not in text
    assert tool.check(repo) == []


def test_check_detects_a_stale_patch_file(repo: tool.Layout) -> None:
    tool.apply(repo)
    name = add_patch(repo)
    path = repo.patches_dir / name
    # An outdated hunk position still applies (git finds it at an offset),
    # but re-exporting writes the true one: the file is stale.
    text = path.read_text()
    assert "@@ -7,7 +7,7 @@" in text
    path.write_text(text.replace("@@ -7,7 +7,7 @@", "@@ -5,7 +5,7 @@"))
    problems = tool.check(repo)
    assert any(f"{name} is stale" in p for p in problems), problems


def test_check_requires_a_message_body(repo: tool.Layout) -> None:
    tool.apply(repo)
    name = add_patch(repo)
    path = repo.patches_dir / name
    path.write_text(path.read_text().replace("Because the fork needs a hook here.\n", ""))
    problems = tool.check(repo)
    assert any("no message body" in p for p in problems), problems


def test_failing_hunk_names_patch_file_and_hunk(repo: tool.Layout) -> None:
    tool.apply(repo)
    name = add_patch(repo)
    path = repo.patches_dir / name
    # Context that exists nowhere, and an index line git cannot resolve: no 3-way rescue.
    text = path.read_text().replace(" line 9\n", " line nine\n", 1)
    text = "\n".join(
        "index 1111111111111111111111111111111111111111..2222222222222222222222222222222222222222 100644"
        if line.startswith("index ") else line
        for line in text.split("\n")
    )
    path.write_text(text)
    with pytest.raises(tool.PatchConflict) as info:
        tool.apply(repo, force=True)
    message = str(info.value)
    assert name in message
    assert "tiny/mod.py" in message
    assert "@@ -7," in message  # the hunk header


def test_sha256_mismatch_is_refused(repo: tool.Layout) -> None:
    (repo.cache_dir / "tiny-1.0.tar.gz").write_bytes(b"tampered")
    with pytest.raises(tool.PatchToolError, match="sha256 mismatch"):
        tool.apply(repo)
    assert not (repo.cache_dir / "tiny-1.0.tar.gz").exists()


def test_rebase_onto_a_compatible_release_updates_pin_and_patches(repo: tool.Layout) -> None:
    tool.apply(repo)
    name = add_patch(repo)
    old_patch = (repo.patches_dir / name).read_text()
    make_sdist(repo.cache_dir, "1.1", "prologue\n" + MODULE_V1.replace("line 25\n", "line 25 upstream\n"))
    report = tool.rebase(repo, "1.1")
    assert report.conflicts == []
    pin = tool.read_pin(repo)
    assert pin.version == "1.1"
    assert pin.sha256 == tool._sha256(repo.cache_dir / "tiny-1.1.tar.gz")
    new_patch = (repo.patches_dir / tool.read_series(repo)[0]).read_text()
    assert new_patch != old_patch and "+line 10 hooked" in new_patch
    # The materialized tree is untouched until apply.
    assert "prologue" not in (repo.root / "tiny" / "mod.py").read_text()
    tool.apply(repo, force=True)
    text = (repo.root / "tiny" / "mod.py").read_text()
    assert text.startswith("prologue\n") and "line 10 hooked" in text and "line 25 upstream" in text
    assert tool.check(repo) == []


def test_rebase_reports_each_conflict_and_changes_nothing(repo: tool.Layout) -> None:
    tool.apply(repo)
    first = add_patch(repo)
    edit(repo, "line 20\n", "line 20 fork\n")
    tool.export(repo, new="tiny: second hook", why="A second reason.")
    series = tool.read_series(repo)
    pin_before = repo.pin_file.read_text()
    patches_before = {n: (repo.patches_dir / n).read_text() for n in series}
    make_sdist(repo.cache_dir, "2.0",
               MODULE_V1.replace("line 10\n", "line 10 upstream\n").replace("line 20\n", "line 20 upstream\n"))
    report = tool.rebase(repo, "2.0")
    assert [c.patch for c in report.conflicts] == series
    assert all("tiny/mod.py" in c.files for c in report.conflicts)
    assert series[0] == first
    assert repo.pin_file.read_text() == pin_before
    assert {n: (repo.patches_dir / n).read_text() for n in series} == patches_before


def test_rebase_reports_only_the_patch_that_conflicts_not_the_ones_after_it(repo: tool.Layout) -> None:
    """A conflicting patch is carried forward, so a later patch on its lines is judged on its own."""
    tool.apply(repo)
    first = add_patch(repo)
    edit(repo, "line 10 hooked\n", "line 10 hooked twice\n")  # builds on the first patch's line
    tool.export(repo, new="tiny: build on the hook", why="A later patch that edits the first one's line.")
    edit(repo, "line 28\n", "line 28 fork\n")
    tool.export(repo, new="tiny: third hook", why="A patch far from any upstream change.")
    make_sdist(repo.cache_dir, "2.0", MODULE_V1.replace("line 10\n", "line 10 upstream\n"))
    report = tool.rebase(repo, "2.0")
    assert [c.patch for c in report.conflicts] == [first]
    (conflict,) = report.conflicts
    assert conflict.files == ["tiny/mod.py"]
    assert any(h.startswith("tiny/mod.py: @@ -7,") for h in conflict.hunks), conflict.hunks
    assert any("tiny/mod.py:" in h and "merged file" in h for h in conflict.hunks), conflict.hunks
    assert "still exists" not in str(conflict) and "no file named by git" not in str(conflict)
    assert report.applied == tool.read_series(repo)[1:]


def test_rebase_drops_a_patch_upstream_already_contains(repo: tool.Layout) -> None:
    tool.apply(repo)
    first = add_patch(repo)
    edit(repo, "line 20\n", "line 20 fork\n")
    (second,) = tool.export(repo, new="tiny: second hook", why="A second reason.")[1:]
    make_sdist(repo.cache_dir, "1.2", MODULE_V1.replace("line 10\n", "line 10 hooked\n"))
    report = tool.rebase(repo, "1.2")
    assert report.conflicts == [] and report.already_upstream == [first]
    assert report.applied == [second]
    (only,) = tool.read_series(repo)
    assert "+line 20 fork" in (repo.patches_dir / only).read_text()
    assert tool.read_pin(repo).version == "1.2"


class _Index:
    """A package index on 127.0.0.1: a PEP 691 JSON or PEP 503 HTML project page and its files."""

    def __init__(self, files: dict[str, bytes], style: str, published_sha: dict[str, str] | None = None):
        self.files, self.style, self.requests = files, style, []
        self.published = published_sha or {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the stdlib names it so
                index.requests.append((self.path, self.headers.get("Accept", "")))
                if self.path.rstrip("/") == "/simple/tiny":
                    body, ctype = index.project_page()
                elif self.path.startswith("/files/") and self.path[7:] in index.files:
                    body, ctype = index.files[self.path[7:]], "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def project_page(self) -> tuple[bytes, str]:
        if self.style == "json":
            files = [{"filename": n, "url": f"../../files/{n}", "hashes": {"sha256": self.published[n]}}
                     for n in self.files]
            return json.dumps({"name": "tiny", "files": files}).encode(), "application/vnd.pypi.simple.v1+json"
        links = "".join(f'<a href="/files/{n}#sha256={self.published[n]}">{n}</a><br/>' for n in self.files)
        return f"<html><body>{links}</body></html>".encode(), "text/html"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("style", ["json", "html"])
def test_sdist_is_downloaded_from_the_index_without_pip(tmp_path: Path, style: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside pip's isolated build env pip is not importable: the download is the stdlib's."""
    make_sdist(tmp_path / "upload", "1.0", MODULE_V1)
    data = (tmp_path / "upload" / "tiny-1.0.tar.gz").read_bytes()
    index = _Index({"tiny-1.0.tar.gz": data, "tiny-0.9.tar.gz": b"other"}, style)
    try:
        monkeypatch.setenv("PIP_INDEX_URL", index.url)
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))  # no subprocess pip
        layout = tool.Layout(root=tmp_path, patches_dir=tmp_path / "patches", cache_dir=tmp_path / "cache")
        path, digest = tool.fetch_sdist(layout, "tiny", "1.0", hashlib.sha256(data).hexdigest())
        assert path.read_bytes() == data and digest == hashlib.sha256(data).hexdigest()
        assert index.requests[0][0] == "/simple/tiny/"
        assert "application/vnd.pypi.simple.v1+json" in index.requests[0][1]
        assert list((tmp_path / "cache").iterdir()) == [path]  # no partial file left behind
    finally:
        index.close()


def test_sdist_download_keeps_the_sha256_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = _Index({"tiny-1.0.tar.gz": b"tampered"}, "json")
    try:
        monkeypatch.setenv("PIP_INDEX_URL", index.url)
        layout = tool.Layout(root=tmp_path, patches_dir=tmp_path / "patches", cache_dir=tmp_path / "cache")
        with pytest.raises(tool.PatchToolError, match="sha256 mismatch"):
            tool.fetch_sdist(layout, "tiny", "1.0", "0" * 64)
        assert not (tmp_path / "cache" / "tiny-1.0.tar.gz").exists()
        index.published["tiny-1.0.tar.gz"] = "1" * 64  # the file does not match what the index says
        with pytest.raises(tool.PatchToolError, match="does not match the index's own sha256"):
            tool.fetch_sdist(layout, "tiny", "1.0", None)
        assert list((tmp_path / "cache").iterdir()) == []
    finally:
        index.close()


def test_unreachable_index_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple")
    layout = tool.Layout(root=tmp_path, patches_dir=tmp_path / "patches", cache_dir=tmp_path / "cache")
    with pytest.raises(tool.PatchToolError) as info:
        tool.fetch_sdist(layout, "tiny", "1.0", "0" * 64)
    message = str(info.value)
    assert "tiny==1.0" in message and "cannot be reached" in message and f"127.0.0.1:{port}" in message
    assert "PIP_INDEX_URL" in message and "CREWAI_FORK_SDIST_CACHE" in message
    index = _Index({}, "json")
    try:
        monkeypatch.setenv("PIP_INDEX_URL", index.url)
        with pytest.raises(tool.PatchToolError, match="lists no tiny-1.0.tar.gz"):
            tool.fetch_sdist(layout, "tiny", "1.0", "0" * 64)
    finally:
        index.close()


def test_cli_reports_errors_without_traceback(repo: tool.Layout) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "patches", "--repo", str(repo.root), "--cache-dir", str(repo.cache_dir), "export"],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False,
    )
    assert result.returncode == 1
    assert "nothing is materialized" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the real pin


def _real_layout() -> tool.Layout:
    return tool.Layout.for_root(REPO_ROOT)


def test_real_series_applies_to_the_pin_and_is_not_stale() -> None:
    assert tool.check(_real_layout()) == []


def test_every_real_patch_is_small_and_explains_itself() -> None:
    layout = _real_layout()
    for name in tool.read_series(layout):
        text = (layout.patches_dir / name).read_text()
        header, _, diff = text.partition("\n---\n")
        body = header.split("\n\n", 1)[1] if "\n\n" in header else ""
        assert len(body.split()) >= 15, f"{name}: the message should say why the patch exists"
        changed = [line for line in diff.splitlines()
                   if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        assert len(changed) <= 40, f"{name}: {len(changed)} changed lines; hooks stay small"


def test_rebase_onto_a_real_other_release(tmp_path: Path) -> None:
    """Replay the real series onto crewai 1.15.29 in a copy, never touching this checkout's pin."""
    layout = _real_layout()
    copy = tmp_path / "repo"
    shutil.copytree(layout.patches_dir, copy / "patches", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", copy / "pyproject.toml")
    pin_before = layout.pin_file.read_text()
    scratch = tool.Layout(root=copy, patches_dir=copy / "patches", cache_dir=layout.cache_dir)
    report = tool.rebase(scratch, "1.15.29")
    assert report.conflicts == [], [str(c) for c in report.conflicts]
    assert tool.read_pin(scratch).version == "1.15.29"
    assert len(tool.read_pin(scratch).sha256) == 64
    assert 'version = "1.15.29+rust.1"' in (copy / "pyproject.toml").read_text()
    fixtures = tool.read_pin(scratch).fixtures
    assert fixtures is not None and fixtures.version == "1.15.29" and len(fixtures.sha256) == 64
    assert tool.check(scratch) == []
    assert layout.pin_file.read_text() == pin_before


def test_rebase_onto_a_real_older_release_names_exactly_the_conflicting_patches(tmp_path: Path) -> None:
    """crewai 1.15.20 changed the three SQLite stores; every other patch still applies there."""
    layout = _real_layout()
    copy = tmp_path / "repo"
    shutil.copytree(layout.patches_dir, copy / "patches", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", copy / "pyproject.toml")
    scratch = tool.Layout(root=copy, patches_dir=copy / "patches", cache_dir=layout.cache_dir)
    patches_before = {p.name: p.read_bytes() for p in (copy / "patches").iterdir() if p.is_file()}
    report = tool.rebase(scratch, "1.15.20")
    conflicting = {c.patch.split("-", 1)[0]: c for c in report.conflicts}
    assert sorted(conflicting) == ["0002", "0003", "0004", "0008"], [str(c) for c in report.conflicts]
    assert conflicting["0002"].files == ["crewai/memory/storage/kickoff_task_outputs_storage.py"]
    assert conflicting["0003"].files == ["crewai/flow/persistence/sqlite.py"]
    assert conflicting["0004"].files == ["crewai/state/provider/sqlite_provider.py"]
    for conflict in report.conflicts:
        assert conflict.hunks, str(conflict)
        assert all(h.split(":", 1)[0] in conflict.files for h in conflict.hunks), str(conflict)
    assert len(report.applied) == len(tool.read_series(scratch)) - 4
    assert {p.name: p.read_bytes() for p in (copy / "patches").iterdir() if p.is_file()} == patches_before
