"""Patch-queue tooling for the fork: pinned upstream sdist + a series of hook patches.

The materialized tree is managed like Debian's gbp-pq or Electron's Chromium
patches: a private git repository (``.upstream/git``) whose work tree is the
project root, tracking only the generated paths (``crewai/`` and
``upstream-tests/tests/``). Its first commit is the pristine upstream sdist
(tag ``upstream``); every patch of the series is one commit on top, imported
3-way with ``git am -3``. Patch files are exported reproducibly with
``git format-patch --zero-commit --full-index --no-signature``, so re-exporting
an unchanged series gives byte-identical files, which is what ``check`` relies
on to catch stale patches.

Only the standard library and git are used: the PEP 517 backend calls
:func:`apply` before maturin builds a wheel from a fresh clone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Files that appear in the generated trees without being upstream content.
_GENERATED_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
_GENERATED_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd")

_BASE_TAG = "upstream"
_BRANCH = "patches"
# A fixed identity and date make the base commit (and so the whole queue) the
# same on every machine; the patches carry their own authors and dates.
_BASE_IDENTITY = {
    "GIT_AUTHOR_NAME": "crewai upstream",
    "GIT_AUTHOR_EMAIL": "upstream@crewai.invalid",
    "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "crewai upstream",
    "GIT_COMMITTER_EMAIL": "upstream@crewai.invalid",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000",
}
_FORMAT_PATCH_ARGS = (
    "format-patch",
    "--zero-commit",
    "--full-index",
    "--no-signature",
    "--no-numbered",
    "--stat=80",
    "--stat-graph-width=20",
)
_REQUIREMENTS_BEGIN = "# BEGIN upstream requirements (written by `python -m patches rebase`; `check` compares them with the pinned sdist)"
_REQUIREMENTS_END = "# END upstream requirements"


class PatchToolError(Exception):
    """A failure the tool reports to the engineer (no traceback needed)."""


class PatchConflict(PatchToolError):
    """One patch of the series does not apply."""

    def __init__(self, patch: str, files: list[str], hunks: list[str], detail: str):
        self.patch = patch
        self.files = files
        self.hunks = hunks
        self.detail = detail
        where = ", ".join(files) if files else "(no file named by git)"
        lines = [f"patch {patch} does not apply: {where}"]
        lines += [f"  failing hunk: {hunk}" for hunk in hunks]
        if not files and not hunks:
            lines += [f"  git: {line}" for line in detail.splitlines()[-5:]]
        super().__init__("\n".join(lines))


@dataclasses.dataclass(frozen=True)
class FixturesPin:
    """Test data upstream's tests read from a sibling package of its monorepo.

    The crewai sdist's multimodal tests open ``../crewai-files/tests/fixtures``
    relative to their package's directory; that data ships in the
    crewai-files sdist of the same release.
    """

    package: str
    version: str
    sha256: str
    source: str  # directory inside that sdist, e.g. "tests/fixtures"
    target: str  # directory under upstream-tests/, e.g. "crewai-files/tests/fixtures"


@dataclasses.dataclass(frozen=True)
class Pin:
    package: str
    version: str
    sha256: str
    fixtures: FixturesPin | None = None

    @property
    def sdist_name(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything lives. Tests and ``check`` point ``root`` at a temp dir."""

    root: Path
    patches_dir: Path
    cache_dir: Path

    @classmethod
    def for_root(cls, root: Path, cache_dir: Path | None = None) -> Layout:
        root = root.resolve()
        env_cache = os.environ.get("CREWAI_FORK_SDIST_CACHE")
        cache = cache_dir or (Path(env_cache) if env_cache else root / ".upstream" / "cache")
        return cls(root=root, patches_dir=root / "patches", cache_dir=cache.resolve())

    @property
    def state_dir(self) -> Path:
        return self.root / ".upstream"

    @property
    def git_dir(self) -> Path:
        return self.state_dir / "git"

    @property
    def stamp_file(self) -> Path:
        return self.state_dir / "applied.json"

    @property
    def pkg_info_file(self) -> Path:
        return self.state_dir / "PKG-INFO"

    @property
    def pin_file(self) -> Path:
        return self.patches_dir / "pin.json"

    @property
    def series_file(self) -> Path:
        return self.patches_dir / "series"

    def package_dir(self, pin: Pin) -> Path:
        return self.root / pin.package

    @property
    def tests_root(self) -> Path:
        """Laid out like upstream's monorepo: ``<package>/tests`` beside its sibling packages' data."""
        return self.root / "upstream-tests"

    def tests_dir(self, pin: Pin) -> Path:
        return self.tests_root / pin.package / "tests"

    def tracked_paths(self, pin: Pin) -> list[str]:
        return [pin.package, self.tests_dir(pin).relative_to(self.root).as_posix()]


# --------------------------------------------------------------------------- pin/series


def read_pin(layout: Layout) -> Pin:
    try:
        data = json.loads(layout.pin_file.read_text())
        fixtures = FixturesPin(**data["fixtures"]) if data.get("fixtures") else None
        return Pin(package=data["package"], version=data["version"], sha256=data["sha256"], fixtures=fixtures)
    except (OSError, ValueError, KeyError) as exc:
        raise PatchToolError(f"cannot read the upstream pin {layout.pin_file}: {exc}") from exc


def write_pin(layout: Layout, pin: Pin) -> None:
    data = dataclasses.asdict(pin)
    if pin.fixtures is None:
        del data["fixtures"]
    layout.pin_file.write_text(json.dumps(data, indent=2) + "\n")


def read_series(layout: Layout) -> list[str]:
    if not layout.series_file.exists():
        return []
    names = []
    for line in layout.series_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if not (layout.patches_dir / line).is_file():
                raise PatchToolError(f"series names {line}, which is not in {layout.patches_dir}")
            names.append(line)
    return names


# --------------------------------------------------------------------------- sdist


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_DEFAULT_INDEX_URL = "https://pypi.org/simple"
_SIMPLE_API_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"


def index_url() -> str:
    """The package index sdists come from: ``$PIP_INDEX_URL``, else PyPI (pip's own default)."""
    return (os.environ.get("PIP_INDEX_URL") or _DEFAULT_INDEX_URL).rstrip("/")


def _index_timeout() -> float:
    try:
        return float(os.environ.get("PIP_DEFAULT_TIMEOUT") or 60)
    except ValueError:
        return 60.0


def _normalized(package: str) -> str:
    return re.sub(r"[-_.]+", "-", package).lower()


class _LinkParser(html.parser.HTMLParser):
    """The ``<a href>`` links of a PEP 503 simple-index page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append(("".join(self._text).strip(), self._href))
            self._href = None


def _index_files(project_url: str, body: bytes, content_type: str) -> dict[str, tuple[str, str | None]]:
    """{filename: (url, sha256 or None)} from a simple-API project page (PEP 691 JSON or PEP 503 HTML)."""
    files: dict[str, tuple[str, str | None]] = {}
    if "json" in content_type:
        for entry in json.loads(body)["files"]:
            url = urllib.parse.urljoin(project_url, entry["url"])
            files[entry["filename"]] = (url, entry.get("hashes", {}).get("sha256"))
        return files
    parser = _LinkParser()
    parser.feed(body.decode("utf-8", errors="replace"))
    for text, href in parser.links:
        url, _, fragment = urllib.parse.urljoin(project_url, href).partition("#")
        name = text or urllib.parse.unquote(url.rsplit("/", 1)[-1])
        digest = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
        files[name] = (url, digest)
    return files


def _open_index(url: str, what: str, accept: str | None = None):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        return urllib.request.urlopen(request, timeout=_index_timeout())
    except urllib.error.HTTPError as exc:
        raise PatchToolError(f"cannot download {what}: {url} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PatchToolError(
            f"cannot download {what}: the package index cannot be reached ({url}: {reason}). "
            "Check the network, set PIP_INDEX_URL to a reachable index, or place the file in "
            "the sdist cache ($CREWAI_FORK_SDIST_CACHE)"
        ) from exc


def _download_sdist(package: str, version: str, dest: Path) -> str | None:
    """Download ``package==version``'s sdist from the index into ``dest``; return the index's sha256.

    The standard library only: the PEP 517 backend runs this inside pip's
    isolated build environment, where pip itself is not importable.
    """
    what = f"the {package}=={version} sdist"
    project_url = f"{index_url()}/{_normalized(package)}/"
    with _open_index(project_url, what, _SIMPLE_API_ACCEPT) as response:
        body = response.read()
        content_type = response.headers.get("Content-Type", "")
    try:
        files = _index_files(project_url, body, content_type)
    except (ValueError, KeyError, TypeError) as exc:
        raise PatchToolError(
            f"cannot download {what}: {project_url} is not a package index page ({exc})"
        ) from exc
    # The sdist's file name uses the project name as published or normalized (crewai_files-...).
    stems = (package, package.replace("-", "_"), _normalized(package).replace("-", "_"))
    wanted = {f"{stem}-{version}.tar.gz" for stem in stems}
    found = [name for name in files if name in wanted]
    if not found:
        raise PatchToolError(f"cannot download {what}: {project_url} lists no {min(wanted)}")
    url, digest = files[found[0]]
    print(f"patches: downloading {found[0]} from {index_url()}", file=sys.stderr)
    with _open_index(url, what) as response, dest.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    return digest


def fetch_sdist(layout: Layout, package: str, version: str, sha256: str | None) -> tuple[Path, str]:
    """Return the cached sdist (downloading it from the package index if needed) and its sha256.

    With ``sha256`` given, a mismatch is an error and the bad file is removed;
    without it, the download must match the hash the index publishes.
    """
    layout.cache_dir.mkdir(parents=True, exist_ok=True)
    target = layout.cache_dir / f"{package}-{version}.tar.gz"
    if target.exists():
        actual = _sha256(target)
    else:
        with tempfile.TemporaryDirectory(dir=layout.cache_dir) as tmp:
            partial = Path(tmp) / target.name
            index_digest = _download_sdist(package, version, partial)
            actual = _sha256(partial)
            if index_digest is not None and actual != index_digest:
                raise PatchToolError(
                    f"{target.name} from {index_url()} does not match the index's own sha256 "
                    f"({index_digest}, got {actual}): the download was discarded"
                )
            partial.replace(target)
    if sha256 is not None and actual != sha256:
        target.unlink()
        raise PatchToolError(
            f"sha256 mismatch for {target.name}: pinned {sha256}, downloaded {actual}; "
            "the file was removed from the cache"
        )
    return target, actual


def _extract_sdist(sdist: Path, pin: Pin, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        tar.extractall(dest, filter="data")
    top = dest / f"{pin.package}-{pin.version}"
    if not (top / "src" / pin.package / "__init__.py").is_file():
        raise PatchToolError(f"{sdist.name} has no src/{pin.package} package")
    return top


# --------------------------------------------------------------------------- git


def _git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The engineer's own git configuration (diff prefixes, signatures, hooks,
    # am.threeWay, ...) must not change what is imported or exported.
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    env.pop("GIT_INDEX_FILE", None)
    env.update(extra or {})
    return env


def identity() -> dict[str, str]:
    """The engineer's identity for new patch commits, from the project's own git."""
    env: dict[str, str] = {}
    for key, var in (("user.name", "NAME"), ("user.email", "EMAIL")):
        value = subprocess.run(
            ["git", "config", key], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        default = "crewai-rust fork" if var == "NAME" else "fork@crewai-rust.invalid"
        env[f"GIT_AUTHOR_{var}"] = env[f"GIT_COMMITTER_{var}"] = value or default
    return env


def git(layout: Layout, *args: str, check: bool = True, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [
        "git", f"--git-dir={layout.git_dir}", f"--work-tree={layout.root}",
        "-c", "core.autocrlf=false", "-c", "core.quotepath=false",
        "-c", "user.useConfigOnly=false", *args,
    ]
    result = subprocess.run(
        cmd, cwd=cwd or layout.root, capture_output=True, text=True, env=_git_env(env), check=False
    )
    if check and result.returncode != 0:
        raise PatchToolError(
            f"git {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}".rstrip()
        )
    return result


def _is_generated(rel: str) -> bool:
    parts = rel.split("/")
    return any(p in _GENERATED_NAMES for p in parts) or rel.endswith(_GENERATED_SUFFIXES)


def pending_edits(layout: Layout, pin: Pin) -> list[str]:
    """Edits in the generated trees that are not yet commits of the queue."""
    paths = layout.tracked_paths(pin)
    changed = git(layout, "status", "--porcelain=v1", "--untracked-files=no", "--", *paths).stdout
    edits = [line[3:] for line in changed.splitlines() if line.strip()]
    # Untracked files are listed without exclude rules: the project's own
    # .gitignore ignores these whole trees, yet a file an engineer adds there
    # belongs in a patch.
    untracked = git(layout, "ls-files", "--others", "--", *paths).stdout.splitlines()
    edits += [f"{rel} (new)" for rel in untracked if not _is_generated(rel)]
    return edits


def _stage_edits(layout: Layout, pin: Pin) -> None:
    paths = layout.tracked_paths(pin)
    git(layout, "add", "--update", "--", *paths)
    untracked = git(layout, "ls-files", "--others", "--", *paths).stdout.splitlines()
    new = [rel for rel in untracked if not _is_generated(rel)]
    if new:
        git(layout, "add", "--force", "--", *new)


def _hunks_failing(patch_file: Path, layout: Layout) -> tuple[list[str], list[str]]:
    """Ask git which file and hunk of ``patch_file`` does not apply to the work tree."""
    result = git(layout, "apply", "--check", "--verbose", str(patch_file), check=False)
    files: list[str] = []
    hunks: list[str] = []
    text = patch_file.read_text(errors="replace")
    for match in re.finditer(r"error: patch failed: (.+):(\d+)", result.stderr):
        path, line = match.group(1), int(match.group(2))
        if path not in files:
            files.append(path)
        hunks.append(_hunk_header(text, path, line) or f"{path}:{line}")
    for match in re.finditer(r"error: (\S+): does not exist in index", result.stderr):
        if match.group(1) not in files:
            files.append(match.group(1))
    return files, hunks


def _hunk_header(patch_text: str, path: str, old_line: int) -> str | None:
    current = None
    for line in patch_text.splitlines():
        if line.startswith("diff --git "):
            current = line.split(" b/", 1)[-1]
        elif current == path and line.startswith("@@ "):
            match = re.match(r"@@ -(\d+)", line)
            if match and int(match.group(1)) == old_line:
                return f"{path}: {line}"
    return None


def _am(layout: Layout, patch_file: Path) -> None:
    """Import one patch 3-way; on failure abort the am and raise PatchConflict."""
    result = git(
        layout, "am", "--3way", "--keep-cr", "--committer-date-is-author-date",
        "--whitespace=nowarn", str(patch_file), check=False,
        env={key: _BASE_IDENTITY[key] for key in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")},
    )
    if result.returncode == 0:
        return
    output = result.stdout + result.stderr
    files = re.findall(r"CONFLICT \([^)]*\): (?:Merge conflict in )?(\S+)", output)
    files += [f for f in re.findall(r"error: patch failed: (.+):\d+", output) if f not in files]
    git(layout, "am", "--abort", check=False)
    hunk_files, hunks = _hunks_failing(patch_file, layout)
    files += [f for f in hunk_files if f not in files]
    raise PatchConflict(patch_file.name, files, hunks, output.strip())


# --------------------------------------------------------------------------- materialize


def _stamp(layout: Layout, pin: Pin, series: list[str]) -> str:
    digest = hashlib.sha256(layout.pin_file.read_bytes())
    for name in series:
        digest.update(name.encode() + b"\0" + (layout.patches_dir / name).read_bytes())
    return digest.hexdigest()


def _read_stamp(layout: Layout) -> dict[str, str]:
    try:
        return json.loads(layout.stamp_file.read_text())
    except (OSError, ValueError):
        return {}


def _materialize_fixtures(layout: Layout, fixtures: FixturesPin) -> None:
    sdist, _ = fetch_sdist(layout, fixtures.package, fixtures.version, fixtures.sha256)
    target = layout.tests_root / fixtures.target
    prefix = fixtures.source.strip("/") + "/"
    with tarfile.open(sdist) as tar:
        members = []
        for member in tar.getmembers():
            _, _, inner = member.name.partition("/")  # drop the sdist's top directory
            if inner.startswith(prefix) and member.isfile():
                member.name = inner[len(prefix):]
                members.append(member)
        if not members:
            raise PatchToolError(f"{sdist.name} has no {fixtures.source}/ directory")
        target.mkdir(parents=True, exist_ok=True)
        tar.extractall(target, members=members, filter="data")


def materialize_base(layout: Layout, pin: Pin, sdist: Path) -> None:
    """Replace the generated trees with the pristine sdist and commit it as the queue's base."""
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=layout.state_dir) as tmp:
        top = _extract_sdist(sdist, pin, Path(tmp))
        package_dir = layout.package_dir(pin)
        for old in (package_dir, layout.tests_root, layout.git_dir):
            if old.exists():
                shutil.rmtree(old)
        tests_dir = layout.tests_dir(pin)
        tests_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(top / "src" / pin.package), package_dir)
        if (top / "tests").is_dir():
            shutil.move(str(top / "tests"), tests_dir)
        else:
            tests_dir.mkdir()
        if (top / "PKG-INFO").is_file():
            shutil.copyfile(top / "PKG-INFO", layout.pkg_info_file)
    if pin.fixtures is not None:
        _materialize_fixtures(layout, pin.fixtures)
    layout.stamp_file.unlink(missing_ok=True)
    git(layout, "init", "--quiet", f"--initial-branch={_BRANCH}")
    git(layout, "config", "core.hooksPath", os.devnull)
    # --force: the project's .gitignore ignores the generated trees on purpose.
    git(layout, "add", "--force", "--", *layout.tracked_paths(pin))
    git(
        layout, "commit", "--quiet", "--no-verify",
        "-m", f"upstream {pin.package} {pin.version}",
        "-m", f"Pristine sdist {pin.sdist_name}, sha256 {pin.sha256}.",
        env=_BASE_IDENTITY,
    )
    git(layout, "tag", _BASE_TAG)


def apply(layout: Layout, force: bool = False, quiet: bool = False) -> bool:
    """Materialize the pinned upstream with the series applied. Returns False if already up to date."""
    pin = read_pin(layout)
    series = read_series(layout)
    stamp = _stamp(layout, pin, series)
    package_dir = layout.package_dir(pin)
    managed = layout.git_dir.is_dir()

    if managed and not force:
        edits = pending_edits(layout, pin)
        if edits:
            raise PatchToolError(
                f"{len(edits)} local edit(s) under the generated trees, e.g. {edits[0]}; "
                "keep them with `python -m patches export --new ...|--into ...`, "
                "or discard them with `python -m patches apply --force`"
            )
        recorded = _read_stamp(layout)
        head = git(layout, "rev-parse", "HEAD", check=False).stdout.strip()
        if recorded.get("stamp") == stamp and recorded.get("head") == head:
            if not quiet:
                print(f"patches: {pin.package} {pin.version} + {len(series)} patch(es) already applied")
            return False
        if recorded.get("head") and recorded.get("head") != head:
            raise PatchToolError(
                "the patch queue has commits that are not exported to patches/; "
                "run `python -m patches export`, or `python -m patches apply --force` to drop them"
            )
    elif package_dir.exists() and not force:
        raise PatchToolError(
            f"{package_dir} exists but is not managed by the patch tool (no {layout.git_dir}); "
            "rerun with --force to regenerate it from the pinned sdist"
        )

    sdist, _ = fetch_sdist(layout, pin.package, pin.version, pin.sha256)
    materialize_base(layout, pin, sdist)
    for name in series:
        _am(layout, layout.patches_dir / name)
    head = git(layout, "rev-parse", "HEAD").stdout.strip()
    layout.stamp_file.write_text(json.dumps({"stamp": stamp, "head": head}) + "\n")
    if not quiet:
        print(f"patches: materialized {pin.package} {pin.version} + {len(series)} patch(es)")
    return True


# --------------------------------------------------------------------------- export


def _format_series(layout: Layout, out_dir: Path) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    result = git(layout, *_FORMAT_PATCH_ARGS, "-o", str(out_dir), f"{_BASE_TAG}..HEAD")
    return [Path(line).name for line in result.stdout.splitlines() if line.strip()]


def _write_series(layout: Layout, exported: Path, names: list[str]) -> None:
    for old in read_series(layout):
        (layout.patches_dir / old).unlink(missing_ok=True)
    for name in names:
        shutil.copyfile(exported / name, layout.patches_dir / name)
    layout.series_file.write_text("".join(f"{name}\n" for name in names))


def _patch_commits(layout: Layout) -> list[tuple[str, str]]:
    log = git(layout, "log", "--reverse", "--format=%H %s", f"{_BASE_TAG}..HEAD").stdout
    return [tuple(line.split(" ", 1)) for line in log.splitlines()]  # type: ignore[misc]


def export(layout: Layout, new: str | None = None, why: str | None = None,
           into: str | None = None) -> list[str]:
    """Turn local edits (and queue commits) into the patch files and series."""
    pin = read_pin(layout)
    if not layout.git_dir.is_dir():
        raise PatchToolError("nothing is materialized: run `python -m patches apply` first")
    if new and into:
        raise PatchToolError("--new and --into exclude each other")
    if new and not (why or "").strip():
        raise PatchToolError("a new patch needs --why: every patch's message says why it exists")
    edits = pending_edits(layout, pin)
    if edits and not (new or into):
        raise PatchToolError(
            f"{len(edits)} uncommitted edit(s), e.g. {edits[0]}: pass --new SUBJECT --why TEXT "
            "to make them a new patch, or --into PATCH to fold them into an existing one"
        )
    if (new or into) and not edits:
        raise PatchToolError("there are no edits under the generated trees to export")
    if edits:
        _stage_edits(layout, pin)
        author = identity()
        if new:
            git(layout, "commit", "--quiet", "--no-verify", "-m", new, "-m", why or "", env=author)
        else:
            target = _find_patch_commit(layout, into or "")
            git(layout, "commit", "--quiet", "--no-verify", f"--fixup={target}", env=author)
            result = git(
                layout, "rebase", "--quiet", "--interactive", "--autosquash", _BASE_TAG,
                check=False, env={**author, "GIT_SEQUENCE_EDITOR": "true", "GIT_EDITOR": "true"},
            )
            if result.returncode != 0:
                git(layout, "rebase", "--abort", check=False)
                git(layout, "reset", "--quiet", "--soft", "HEAD~1")
                raise PatchToolError(
                    f"folding the edits into {into} conflicts with a later patch; "
                    f"the edits are left staged:\n{result.stdout}{result.stderr}"
                )
    with tempfile.TemporaryDirectory(dir=layout.state_dir) as tmp:
        names = _format_series(layout, Path(tmp))
        _write_series(layout, Path(tmp), names)
    head = git(layout, "rev-parse", "HEAD").stdout.strip()
    series = read_series(layout)
    layout.stamp_file.write_text(
        json.dumps({"stamp": _stamp(layout, pin, series), "head": head}) + "\n"
    )
    return names


def _find_patch_commit(layout: Layout, name: str) -> str:
    """Map a patch file name, number (``3``, ``0003``) or subject to its queue commit."""
    commits = _patch_commits(layout)
    series = read_series(layout)
    for index, (sha, subject) in enumerate(commits):
        number = f"{index + 1:04d}"
        candidates = {subject, number, str(index + 1)}
        if index < len(series):
            candidates |= {series[index], series[index].removesuffix(".patch")}
        if name in candidates:
            return sha
    raise PatchToolError(f"no patch of the series matches {name!r}")


# --------------------------------------------------------------------------- metadata


def upstream_requirements(pkg_info: str) -> tuple[str, list[str], dict[str, list[str]]]:
    """(Requires-Python, base requirements, {extra: requirements}) from an sdist's PKG-INFO."""
    header = pkg_info.split("\n\n", 1)[0]
    requires_python = ""
    base: list[str] = []
    extras: dict[str, list[str]] = {}
    for line in header.splitlines():
        key, _, value = line.partition(": ")
        if key == "Requires-Python":
            requires_python = value.strip()
        elif key == "Provides-Extra":
            extras.setdefault(value.strip(), [])
        elif key == "Requires-Dist":
            requirement, _, marker = value.partition(";")
            match = re.fullmatch(r"\s*extra == ['\"]([^'\"]+)['\"]\s*", marker) if marker else None
            if match:
                extras.setdefault(match.group(1), []).append(requirement.strip())
            else:
                base.append(value.strip())
    return requires_python, base, extras


def requirements_block(pkg_info: str) -> str:
    requires_python, base, extras = upstream_requirements(pkg_info)
    lines = [_REQUIREMENTS_BEGIN, f'requires-python = "{requires_python}"', "dependencies = ["]
    lines += [f'    "{req}",' for req in base]
    lines += ["]", "", "[project.optional-dependencies]"]
    for extra, reqs in extras.items():
        lines.append(f"{extra} = [" + ", ".join(f'"{req}"' for req in reqs) + "]")
    lines.append(_REQUIREMENTS_END)
    return "\n".join(lines)


def _pyproject_block(text: str) -> tuple[int, int]:
    start = text.find(_REQUIREMENTS_BEGIN)
    end = text.find(_REQUIREMENTS_END)
    if start < 0 or end < 0:
        raise PatchToolError("pyproject.toml lacks the upstream requirements markers")
    return start, end + len(_REQUIREMENTS_END)


def sync_pyproject(pyproject: Path, pkg_info: str, version: str) -> None:
    """Write upstream's requirements and ``<version>+rust.1`` into pyproject.toml."""
    text = pyproject.read_text()
    start, end = _pyproject_block(text)
    text = text[:start] + requirements_block(pkg_info) + text[end:]
    text = re.sub(r'(?m)^version = "[^"]*"', f'version = "{version}+rust.1"', text, count=1)
    pyproject.write_text(text)


def pyproject_drift(pyproject: Path, pkg_info: str, version: str) -> list[str]:
    """Differences between pyproject.toml and the pinned sdist's metadata."""
    problems = []
    text = pyproject.read_text()
    start, end = _pyproject_block(text)
    if text[start:end] != requirements_block(pkg_info):
        problems.append("pyproject.toml's upstream requirements differ from the pinned sdist's PKG-INFO")
    match = re.search(r'(?m)^version = "([^"+]*)\+rust\.\d+"', text)
    if not match or match.group(1) != version:
        problems.append(f"pyproject.toml's version is not {version}+rust.N")
    return problems


# --------------------------------------------------------------------------- check / rebase


def _scratch_layout(layout: Layout, scratch: Path) -> Layout:
    """A layout that materializes into ``scratch`` but reads this project's patches and cache."""
    return Layout(root=scratch, patches_dir=layout.patches_dir, cache_dir=layout.cache_dir)


def check(layout: Layout) -> list[str]:
    """Apply the series to the pin in a scratch dir and re-export it. Returns the problems."""
    pin = read_pin(layout)
    series = read_series(layout)
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="patches-check-") as tmp:
        scratch = _scratch_layout(layout, Path(tmp))
        try:
            apply(scratch, quiet=True)
        except PatchConflict as exc:
            return [str(exc)]
        exported = Path(tmp) / "exported"
        names = _format_series(scratch, exported)
        if names != series:
            problems.append(f"re-exporting gives series {names}, patches/series lists {series}")
        for name in names:
            current = layout.patches_dir / name
            fresh = (exported / name).read_bytes()
            if current.exists() and current.read_bytes() != fresh:
                problems.append(f"{name} is stale: re-exporting it changes the file (run `python -m patches export`)")
        for sha, subject in _patch_commits(scratch):
            body = git(scratch, "log", "-1", "--format=%b", sha).stdout.strip()
            if not body:
                problems.append(f"patch {subject!r} has no message body saying why it exists")
        pkg_info = scratch.pkg_info_file.read_text()
    pyproject = layout.root / "pyproject.toml"
    if pyproject.exists():
        problems += pyproject_drift(pyproject, pkg_info, pin.version)
    return problems


@dataclasses.dataclass
class RebaseReport:
    version: str
    sha256: str
    conflicts: list[PatchConflict]
    applied: list[str]
    already_upstream: list[str] = dataclasses.field(default_factory=list)


_CONFLICT_START = "<<<<<<< "
_CONFLICT_END = ">>>>>>> "


def _conflict_regions(layout: Layout, path: str) -> list[str]:
    """``path:FIRST-LAST`` for each conflict-marker region git left in a work-tree file."""
    try:
        lines = (layout.root / path).read_text(errors="replace").splitlines()
    except OSError:
        return [f"{path}: (modified here, deleted or renamed upstream)"]
    regions, first = [], None
    for number, line in enumerate(lines, 1):
        if line.startswith(_CONFLICT_START):
            first = number
        elif line.startswith(_CONFLICT_END) and first is not None:
            regions.append(f"{path}:{first}-{number} (lines of the merged file)")
            first = None
    return regions or [f"{path}: (conflicting change of the whole file)"]


def _unmerged(layout: Layout) -> list[str]:
    return git(layout, "diff", "--name-only", "--diff-filter=U").stdout.split()


def _replay(layout: Layout, commit: str, patch_file: Path) -> PatchConflict | None | bool:
    """Cherry-pick one queue commit onto ``layout``'s branch with a real 3-way merge.

    The old queue's history (old upstream base and every patch) is in the
    repository, so git merges against the patch's true preimage. Returns None
    when the patch applies, False when upstream already contains it (nothing is
    committed), or the PatchConflict. A conflicting patch is still committed,
    its own side winning each conflicting hunk, so every later patch is judged
    against the target release alone and not against a gap this one left. The
    queue is clean (no cherry-pick in progress) whatever the outcome.
    """
    committer = {key: _BASE_IDENTITY[key] for key in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")}
    result = git(layout, "cherry-pick", commit, check=False, env=committer)
    if result.returncode == 0:
        return None
    unmerged = _unmerged(layout)
    if not unmerged and git(layout, "diff", "--cached", "--quiet", check=False).returncode == 0:
        git(layout, "cherry-pick", "--skip", check=False)
        return False
    if not unmerged:
        git(layout, "cherry-pick", "--abort", check=False)
        raise PatchToolError(
            f"git could not replay {patch_file.name}:\n{(result.stdout + result.stderr).strip()}"
        )
    regions = [region for path in unmerged for region in _conflict_regions(layout, path)]
    git(layout, "cherry-pick", "--abort")
    _, hunks = _hunks_failing(patch_file, layout)
    hunks = [hunk for hunk in hunks if hunk.split(":", 1)[0] in unmerged] + regions
    conflict = PatchConflict(patch_file.name, unmerged, hunks, (result.stdout + result.stderr).strip())

    # Carry the patch forward with its own side of each conflict.
    carried = git(layout, "cherry-pick", "--strategy-option=theirs", commit, check=False, env=committer)
    if carried.returncode != 0:
        for path in _unmerged(layout):
            if git(layout, "cat-file", "-e", f"{commit}:{path}", check=False).returncode == 0:
                git(layout, "checkout", commit, "--", path)
            else:
                git(layout, "rm", "--quiet", "--force", "--", path)
        git(layout, "cherry-pick", "--continue", check=False,
            env={**committer, "GIT_EDITOR": "true"})
        if git(layout, "rev-parse", "--verify", "--quiet", "CHERRY_PICK_HEAD", check=False).returncode == 0:
            git(layout, "cherry-pick", "--abort", check=False)
    return conflict


def rebase(layout: Layout, version: str, sha256: str | None = None) -> RebaseReport:
    """Replay the series onto another upstream release.

    The series is first applied to the current pin in a scratch queue; the
    target release becomes the base of a second scratch queue, and each patch
    commit is cherry-picked onto it (a 3-way merge against the patch's real
    preimage). Every patch is tried, and a conflict names the patch, its files
    and hunks. Only when all apply are the pin, pyproject.toml and the patch
    files rewritten (a patch upstream already contains is dropped from the
    series and reported); the materialized tree of ``layout`` is not touched.
    """
    old_pin = read_pin(layout)
    series = read_series(layout)
    sdist, actual_sha = fetch_sdist(layout, old_pin.package, version, sha256)
    fixtures = None
    if old_pin.fixtures is not None:
        # The sibling package is released in lockstep with upstream.
        _, fixtures_sha = fetch_sdist(layout, old_pin.fixtures.package, version, None)
        fixtures = dataclasses.replace(old_pin.fixtures, version=version, sha256=fixtures_sha)
    new_pin = Pin(package=old_pin.package, version=version, sha256=actual_sha, fixtures=fixtures)
    report = RebaseReport(version, actual_sha, conflicts=[], applied=[])
    with tempfile.TemporaryDirectory(prefix="patches-rebase-") as tmp:
        current = _scratch_layout(layout, Path(tmp) / "current")
        apply(current, quiet=True)
        commits = [sha for sha, _ in _patch_commits(current)]
        target = _scratch_layout(layout, Path(tmp) / "target")
        materialize_base(target, new_pin, sdist)
        git(target, "fetch", "--quiet", "--no-tags", str(current.git_dir), f"{_BRANCH}:refs/queue/current")
        for name, commit in zip(series, commits):
            outcome = _replay(target, commit, layout.patches_dir / name)
            if outcome is None:
                report.applied.append(name)
            elif outcome is False:
                report.already_upstream.append(name)
            else:
                report.conflicts.append(outcome)
        if report.conflicts:
            return report
        exported = Path(tmp) / "exported"
        names = _format_series(target, exported)
        _write_series(layout, exported, names)
        write_pin(layout, new_pin)
        pyproject = layout.root / "pyproject.toml"
        if pyproject.exists():
            sync_pyproject(pyproject, target.pkg_info_file.read_text(), version)
    return report
