"""Root conftest for running upstream crewai's sdist test suite offline.

The crewai sdist ships ``tests/`` (with VCR cassettes under ``tests/cassettes``)
but not the monorepo-root ``conftest.py`` / pytest settings that suite relies
on.  This file plays that role.  ``run_upstream.py`` copies it (and
``pytest.ini``) next to the materialized ``tests/`` directory, so pytest loads it
as the root conftest of that tree.

What it provides:

* a test environment: fake provider credentials, telemetry/tracing off,
  ``CREWAI_TESTING=true``, ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (litellm would
  otherwise fetch its price table over the network on first import);
* HOME / XDG base dirs / ``CREWAI_STORAGE_DIR`` pointing at a fresh temporary
  directory for every test (and at a per-process one during collection, so
  paths computed at import time never land in the real home directory);
  the process environment is restored after every test;
* VCR playback from ``tests/cassettes/<test module's dir relative to tests/>``,
  record mode forced to ``none``, request/response header filtering the way
  the cassettes were recorded, and host normalisation for Azure OpenAI and
  regional Bedrock endpoints;
* small compatibility shims for vcrpy's httpx / aiohttp stubs;
* ``--upstream-deselect-file``: deselects the node ids listed in a file and
  fails the run when one of them no longer exists;
* autouse fixtures resetting crewai's process-global event state between tests.

The file is inert unless it sits next to a ``tests/cassettes`` directory, so a
pytest run over our own repository does not pick up any of this.
"""

from __future__ import annotations

import atexit
import base64
import faulthandler
import gzip
import os
import re
import shutil
import signal
import sysconfig
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
_ACTIVE = (_HERE / "tests" / "cassettes").is_dir()


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------

FAKE_ENV: dict[str, str] = {
    # LLM providers
    "OPENAI_API_KEY": "fake-api-key",
    "ANTHROPIC_API_KEY": "fake-anthropic-key",
    "GEMINI_API_KEY": "fake-gemini-key",
    "AZURE_API_KEY": "fake-azure-key",
    "OPENROUTER_API_KEY": "fake-openrouter-key",
    # AWS
    "AWS_ACCESS_KEY_ID": "fake-aws-access-key",
    "AWS_SECRET_ACCESS_KEY": "fake-aws-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Azure OpenAI
    "AZURE_ENDPOINT": "https://fake-azure-endpoint.openai.azure.com",
    "AZURE_OPENAI_ENDPOINT": "https://fake-azure-endpoint.openai.azure.com",
    "AZURE_OPENAI_API_KEY": "fake-azure-openai-key",
    "AZURE_API_VERSION": "2024-02-15-preview",
    "OPENAI_API_VERSION": "2024-02-15-preview",
    # Search / scraping tools
    "SERPER_API_KEY": "fake-serper-key",
    "EXA_API_KEY": "fake-exa-key",
    "EXA_BASE_URL": "https://api.exa.ai",
    "BRAVE_API_KEY": "fake-brave-key",
    "FIRECRAWL_API_KEY": "fake-firecrawl-key",
    "TAVILY_API_KEY": "fake-tavily-key",
    "SERPAPI_API_KEY": "fake-serpapi-key",
    "SERPLY_API_KEY": "fake-serply-key",
    "LINKUP_API_KEY": "fake-linkup-key",
    "PARALLEL_API_KEY": "fake-parallel-key",
    "BRIGHT_DATA_API_KEY": "fake-brightdata-key",
    "BRIGHT_DATA_ZONE": "fake-zone",
    "BRIGHTDATA_API_URL": "https://api.brightdata.com",
    "BRIGHTDATA_DEFAULT_TIMEOUT": "600",
    "BRIGHTDATA_DEFAULT_POLLING_INTERVAL": "1",
    "OXYLABS_USERNAME": "fake-oxylabs-user",
    "OXYLABS_PASSWORD": "fake-oxylabs-pass",
    "SCRAPFLY_API_KEY": "fake-scrapfly-key",
    "SCRAPEGRAPH_API_KEY": "fake-scrapegraph-key",
    "BROWSERBASE_API_KEY": "fake-browserbase-key",
    "BROWSERBASE_PROJECT_ID": "fake-browserbase-project",
    "HYPERBROWSER_API_KEY": "fake-hyperbrowser-key",
    "MULTION_API_KEY": "fake-multion-key",
    "APIFY_API_TOKEN": "fake-apify-token",
    "TZAFON_API_KEY": "fake-tzafon-key",
    # Databases / vector stores
    "SINGLESTOREDB_URL": "mysql://fake:fake@localhost:3306/fake",
    "SINGLESTOREDB_HOST": "localhost",
    "SINGLESTOREDB_PORT": "3306",
    "SINGLESTOREDB_USER": "fake-user",
    "SINGLESTOREDB_PASSWORD": "fake-password",
    "SINGLESTOREDB_DATABASE": "fake-database",
    "SINGLESTOREDB_CONNECT_TIMEOUT": "30",
    "SNOWFLAKE_USER": "fake-snowflake-user",
    "SNOWFLAKE_PASSWORD": "fake-snowflake-password",
    "SNOWFLAKE_ACCOUNT": "fake-snowflake-account",
    "SNOWFLAKE_WAREHOUSE": "fake-snowflake-warehouse",
    "SNOWFLAKE_DATABASE": "fake-snowflake-database",
    "SNOWFLAKE_SCHEMA": "fake-snowflake-schema",
    "WEAVIATE_URL": "http://localhost:8080",
    "WEAVIATE_API_KEY": "fake-weaviate-key",
    "DATABRICKS_HOST": "https://fake-databricks.cloud.databricks.com",
    "DATABRICKS_TOKEN": "fake-databricks-token",
    "DATABRICKS_CONFIG_PROFILE": "fake-profile",
    "MONGODB_URI": "mongodb://fake:fake@localhost:27017/fake",
    # CrewAI platform (CREWAI_PLATFORM_INTEGRATION_TOKEN deliberately unset:
    # tests/test_context.py asserts it is absent by default)
    "CREWAI_PERSONAL_ACCESS_TOKEN": "fake-personal-token",
    "CREWAI_PLUS_URL": "https://fake.crewai.com",
    # Other services
    "ZAPIER_API_KEY": "fake-zapier-key",
    "PATRONUS_API_KEY": "fake-patronus-key",
    "MINDS_API_KEY": "fake-minds-key",
    "HF_TOKEN": "fake-hf-token",
    # Behaviour switches
    "CREWAI_TESTING": "true",
    "CREWAI_DISABLE_TELEMETRY": "true",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}

# Variables from the caller's shell that would change what the suite sees
# (real endpoints, recording, CI detection, platform tokens).
SCRUBBED_ENV: tuple[str, ...] = (
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "ANTHROPIC_BASE_URL",
    "CREWAI_PLATFORM_INTEGRATION_TOKEN",
    "CREWAI_BASE_URL",
    "PYTEST_VCR_RECORD_MODE",
    "GITHUB_ACTIONS",
    "GOOGLE_API_KEY",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
)

_XDG_DIRS = {
    "XDG_CONFIG_HOME": ".config",
    "XDG_DATA_HOME": ".local/share",
    "XDG_CACHE_HOME": ".cache",
    "XDG_STATE_HOME": ".local/state",
}


def _point_home_at(root: Path) -> None:
    """Make ``root`` the home directory and XDG base for this process."""
    root.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(root)
    for var, rel in _XDG_DIRS.items():
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(path)
    _seed_credentials_key(root)


def _seed_credentials_key(home: Path) -> None:
    """Give a fresh home the encryption key a used machine already has.

    crewai_core's TokenManager creates ``secret.key`` on first use with
    O_EXCL and then writes it; a second thread that loses the O_EXCL race and
    reads the still-empty file raises "Failed to create or read encryption
    key". Every test gets a new home, so every test that starts two kickoffs at
    once (tests/tools/test_tool_failure.py's concurrent kickoffs) ran that
    race; it failed one CI run. The TokenManager tests patch these paths.
    """
    credentials = home / ".local" / "share" / "crewai" / "credentials"
    credentials.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = credentials / "secret.key"
    if not key.exists():
        key.write_bytes(base64.urlsafe_b64encode(os.urandom(32)))
        key.chmod(0o600)


# All temporary homes live under one per-process directory that is removed at
# exit.  Per-test homes are *not* removed after each test: crewai caches some
# paths for the life of the process (e.g. crewai_core.version._get_cache_file
# is an lru_cache that also creates the directory once), so a later test may
# still write below an earlier test's home.
_TMP_BASE: Path | None = None


def _tmp_base() -> Path:
    global _TMP_BASE
    if _TMP_BASE is None:
        _TMP_BASE = Path(tempfile.mkdtemp(prefix="crewai-upstream-"))
        atexit.register(shutil.rmtree, _TMP_BASE, ignore_errors=True)
    return _TMP_BASE


def _apply_base_environment() -> None:
    for name in SCRUBBED_ENV:
        os.environ.pop(name, None)
    os.environ.update(FAKE_ENV)
    # Console scripts of the running interpreter's environment (``uv``,
    # ``crewai``) must be on PATH even when the venv is not activated, as
    # under ``uv run pytest`` upstream (tests/test_plus_api_pin.py runs ``uv``).
    scripts = sysconfig.get_path("scripts")
    path = os.environ.get("PATH", "")
    if scripts and scripts not in path.split(os.pathsep):
        os.environ["PATH"] = scripts + (os.pathsep + path if path else "")
    # One home per process for anything computed at import/collection time
    # (e.g. crewai_core.settings.DEFAULT_CONFIG_PATH = Path.home() / ...).
    process_home = _tmp_base() / "process-home"
    _point_home_at(process_home)
    storage = _tmp_base() / "process-storage"
    storage.mkdir(exist_ok=True)
    os.environ["CREWAI_STORAGE_DIR"] = str(storage)
    # crewai_core.lock_store drops one lock file per lock name into the temp
    # dir; keep those (and pytest's own basetemp) out of the system /tmp.
    tmp = _tmp_base() / "tmp"
    tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = None  # re-read TMPDIR on next gettempdir()


# run_upstream.py names a directory here; on SIGUSR1 (sent when the run has
# been silent too long) every pytest process, controller and workers, writes
# the stacks of all its threads to <dir>/<pid>.txt, which the runner prints.
# A file, not stderr: pytest may be capturing file descriptor 2 at that moment.
STACKS_DIR_VARIABLE = "UPSTREAM_HARNESS_STACKS_DIR"


def _dump_stacks_on_sigusr1() -> None:
    directory = os.environ.get(STACKS_DIR_VARIABLE)
    if not directory or not hasattr(signal, "SIGUSR1"):
        return
    stacks = open(Path(directory) / f"{os.getpid()}.txt", "w")  # noqa: SIM115 - open for the process' life
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)
    atexit.register(stacks.close)


if _ACTIVE:
    # Must happen before anything imports crewai / litellm.
    _apply_base_environment()
    _dump_stacks_on_sigusr1()


# --------------------------------------------------------------------------
# vcrpy shims
# --------------------------------------------------------------------------


def _shim_vcr_aiohttp() -> None:
    """Keep vcrpy's aiohttp stub constructible with the installed aiohttp.

    vcrpy <= 8.1 subclasses ``aiohttp.streams.AsyncStreamReaderMixin`` (gone in
    aiohttp 3.14) and does not pass ``stream_writer`` (required since 3.14).
    vcrpy 8.2 handles both; the shim only acts when the stub cannot be built.
    """
    import asyncio
    import inspect

    try:
        from aiohttp import streams
        from aiohttp.client_reqrep import ClientResponse
    except ImportError:
        return

    if not hasattr(streams, "AsyncStreamReaderMixin"):

        class _IterHelpers:
            __slots__ = ()

            def __aiter__(self) -> Any:
                return streams.AsyncStreamIterator(self.readline)  # type: ignore[attr-defined]

            def iter_chunked(self, n: int) -> Any:
                return streams.AsyncStreamIterator(lambda: self.read(n))  # type: ignore[attr-defined]

            def iter_any(self) -> Any:
                return streams.AsyncStreamIterator(self.readany)  # type: ignore[attr-defined]

            def iter_chunks(self) -> Any:
                return streams.ChunkTupleAsyncStreamIterator(self)  # type: ignore[arg-type]

        streams.AsyncStreamReaderMixin = _IterHelpers  # type: ignore[attr-defined]

    from vcr.stubs import aiohttp_stubs

    mock_cls = aiohttp_stubs.MockClientResponse
    if getattr(mock_cls, "_upstream_harness_shim", False):
        return
    if "stream_writer" not in inspect.signature(ClientResponse.__init__).parameters:
        return
    init_src = inspect.getsource(mock_cls.__init__)
    if "stream_writer" in init_src:
        return  # this vcrpy already passes it

    kw_only = [
        name
        for name, p in inspect.signature(ClientResponse.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]

    class _SentWriter:
        output_size = 0

    def __init__(self: Any, method: str, url: Any, request_info: Any = None) -> None:
        kwargs: dict[str, Any] = dict.fromkeys(kw_only)
        kwargs["request_info"] = request_info
        if "loop" in kwargs:
            try:
                kwargs["loop"] = asyncio.get_running_loop()
            except RuntimeError:
                kwargs["loop"] = asyncio.new_event_loop()
        kwargs["stream_writer"] = _SentWriter()
        ClientResponse.__init__(self, method, url, **kwargs)

    mock_cls.__init__ = __init__
    mock_cls._upstream_harness_shim = True


def _shim_vcr_httpx() -> None:
    """Record/match binary httpx request bodies the way the cassettes store them.

    Bodies that are not valid UTF-8 (file uploads, multipart with binary parts)
    are kept as base64 text, as upstream's recording harness did, so a ``body``
    matcher and the YAML serializer both see text.  Also make sure a replayed
    ``httpx.Response`` has its content loaded (older vcrpy mocked ``read()``
    and left ``_content`` unset -> ``httpx.ResponseNotRead``).
    """
    try:
        from vcr.stubs import httpx_stubs
    except ImportError:
        return
    if getattr(httpx_stubs, "_upstream_harness_shim", False):
        return
    from vcr.request import Request as VcrRequest

    def _body_as_text(raw: Any) -> Any:
        if isinstance(raw, (bytes, bytearray)):
            try:
                return bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                return base64.b64encode(bytes(raw)).decode("ascii")
        return raw

    def _make_vcr_request(real_request: Any, real_request_body: Any = None, **_: Any) -> Any:
        raw = real_request_body if real_request_body is not None else real_request.read()
        return VcrRequest(
            real_request.method,
            str(real_request.url),
            _body_as_text(raw),
            dict(real_request.headers),
        )

    httpx_stubs._make_vcr_request = _make_vcr_request

    legacy = getattr(httpx_stubs, "_from_serialized_response", None)
    if legacy is not None:

        def _from_serialized_response(request: Any, serialized: Any, history: Any = None) -> Any:
            response = legacy(request, serialized, history)
            content = serialized.get("body", {}).get("string", b"")
            if isinstance(content, str):
                content = content.encode("utf-8")
            response._content = content
            return response

        httpx_stubs._from_serialized_response = _from_serialized_response

    httpx_stubs._upstream_harness_shim = True


if _ACTIVE:
    _shim_vcr_aiohttp()
    _shim_vcr_httpx()


# --------------------------------------------------------------------------
# VCR configuration
# --------------------------------------------------------------------------

# Header -> placeholder, as written into the cassettes when they were recorded.
FILTERED_HEADERS: dict[str, str] = {
    "authorization": "AUTHORIZATION-XXX",
    "cookie": "COOKIE-XXX",
    "set-cookie": "SET-COOKIE-XXX",
    "content-security-policy": "CSP-FILTERED",
    "permissions-policy": "PERMISSIONS-POLICY-XXX",
    "referrer-policy": "REFERRER-POLICY-XXX",
    "strict-transport-security": "STS-XXX",
    "x-content-type-options": "X-CONTENT-TYPE-XXX",
    "x-frame-options": "X-FRAME-OPTIONS-XXX",
    "x-permitted-cross-domain-policies": "X-PERMITTED-XXX",
    "x-xss-protection": "X-XSS-PROTECTION-XXX",
    "x-request-id": "X-REQUEST-ID-XXX",
    "x-runtime": "X-RUNTIME-XXX",
    "x-stainless-arch": "X-STAINLESS-ARCH-XXX",
    "x-stainless-os": "X-STAINLESS-OS-XXX",
    "x-stainless-read-timeout": "X-STAINLESS-READ-TIMEOUT-XXX",
    "cf-ray": "CF-RAY-XXX",
    "etag": "ETAG-XXX",
    "access-control-expose-headers": "ACCESS-CONTROL-XXX",
    "openai-organization": "OPENAI-ORG-XXX",
    "openai-project": "OPENAI-PROJECT-XXX",
    "x-ratelimit-limit-requests": "X-RATELIMIT-LIMIT-REQUESTS-XXX",
    "x-ratelimit-limit-tokens": "X-RATELIMIT-LIMIT-TOKENS-XXX",
    "x-ratelimit-remaining-requests": "X-RATELIMIT-REMAINING-REQUESTS-XXX",
    "x-ratelimit-remaining-tokens": "X-RATELIMIT-REMAINING-TOKENS-XXX",
    "x-ratelimit-reset-requests": "X-RATELIMIT-RESET-REQUESTS-XXX",
    "x-ratelimit-reset-tokens": "X-RATELIMIT-RESET-TOKENS-XXX",
    "x-goog-api-key": "X-GOOG-API-KEY-XXX",
    "api-key": "X-API-KEY-XXX",
    "x-api-key": "X-API-KEY-XXX",
    "user-agent": "X-USER-AGENT-XXX",
    "apim-request-id": "APIM-REQUEST-ID-XXX",
    "azureml-model-session": "AZUREML-MODEL-SESSION-XXX",
    "x-ms-client-request-id": "X-MS-CLIENT-REQUEST-ID-XXX",
    "x-ms-region": "X-MS-REGION-XXX",
    "anthropic-organization-id": "ANTHROPIC-ORGANIZATION-ID-XXX",
    "request-id": "REQUEST-ID-XXX",
    "anthropic-ratelimit-input-tokens-limit": "ANTHROPIC-RATELIMIT-INPUT-TOKENS-LIMIT-XXX",
    "anthropic-ratelimit-input-tokens-remaining": "ANTHROPIC-RATELIMIT-INPUT-TOKENS-REMAINING-XXX",
    "anthropic-ratelimit-input-tokens-reset": "ANTHROPIC-RATELIMIT-INPUT-TOKENS-RESET-XXX",
    "anthropic-ratelimit-output-tokens-limit": "ANTHROPIC-RATELIMIT-OUTPUT-TOKENS-LIMIT-XXX",
    "anthropic-ratelimit-output-tokens-remaining": "ANTHROPIC-RATELIMIT-OUTPUT-TOKENS-REMAINING-XXX",
    "anthropic-ratelimit-output-tokens-reset": "ANTHROPIC-RATELIMIT-OUTPUT-TOKENS-RESET-XXX",
    "anthropic-ratelimit-tokens-limit": "ANTHROPIC-RATELIMIT-TOKENS-LIMIT-XXX",
    "anthropic-ratelimit-tokens-remaining": "ANTHROPIC-RATELIMIT-TOKENS-REMAINING-XXX",
    "anthropic-ratelimit-tokens-reset": "ANTHROPIC-RATELIMIT-TOKENS-RESET-XXX",
    "x-amz-date": "X-AMZ-DATE-XXX",
    "x-amz-security-token": "X-AMZ-SECURITY-TOKEN-XXX",
    "amz-sdk-invocation-id": "AMZ-SDK-INVOCATION-ID-XXX",
    "accept-encoding": "ACCEPT-ENCODING-XXX",
    "x-amzn-requestid": "X-AMZN-REQUESTID-XXX",
    "x-a2a-notification-token": "X-A2A-NOTIFICATION-TOKEN-XXX",
    "x-a2a-version": "X-A2A-VERSION-XXX",
}

AZURE_PLACEHOLDER_HOST = "fake-azure-endpoint.openai.azure.com"
BEDROCK_PLACEHOLDER_HOST = "bedrock-runtime.vcr.amazonaws.com"
_BEDROCK_REGIONAL = re.compile(r"^bedrock-runtime\.[a-z0-9-]+\.amazonaws\.com$")


def normalise_host(host: str) -> str:
    """Collapse per-deployment hosts onto the placeholders used in cassettes."""
    if _BEDROCK_REGIONAL.match(host):
        return BEDROCK_PLACEHOLDER_HOST
    if host.endswith(".openai.azure.com"):
        return AZURE_PLACEHOLDER_HOST
    return host


def host_matcher(r1: Any, r2: Any) -> None:
    """vcrpy matcher: hosts equal after normalisation (Bedrock region, Azure resource)."""
    h1, h2 = normalise_host(r1.host or ""), normalise_host(r2.host or "")
    if h1 != h2:
        raise AssertionError(f"{h1} != {h2}")


def _mask_headers(headers: Any) -> None:
    present = {name.lower(): name for name in list(headers.keys())}
    for lowered, placeholder in FILTERED_HEADERS.items():
        original = present.get(lowered)
        if original is not None:
            headers[original] = [placeholder] if isinstance(headers[original], list) else placeholder


def filter_request(request: Any) -> Any:
    """``before_record_request``: applied to live requests before matching too."""
    request.method = request.method.upper()
    host = request.host or ""
    canonical = normalise_host(host)
    if canonical != host:
        request.uri = request.uri.replace(host, canonical, 1)
    return request


def filter_response(response: dict[str, Any]) -> dict[str, Any] | None:
    """``before_record_response``; only relevant when recording, kept for parity."""
    headers = response.get("headers", {})
    body = response.get("body", {}).get("string", b"")
    if body in ("", b"") or headers.get("content-length", headers.get("Content-Length")) == ["0"]:
        return None
    status = response.get("status", {}).get("code")
    if isinstance(status, int) and status >= 400:
        return None
    for name in ("Content-Encoding", "content-encoding"):
        if name in headers:
            encoding = headers.pop(name)
            if encoding and encoding[0] == "gzip" and isinstance(body, bytes) and body[:2] == b"\x1f\x8b":
                response["body"]["string"] = gzip.decompress(body).decode("utf-8")
    _mask_headers(headers)
    return response


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    """``tests/a/b/test_x.py`` -> ``tests/cassettes/a/b`` (``tests/test_x.py`` -> ``tests/cassettes``)."""
    module_path = Path(str(request.node.fspath)).resolve()
    tests_root = _HERE / "tests"
    try:
        rel = module_path.parent.relative_to(tests_root)
    except ValueError:
        rel = Path()
    return str(tests_root / "cassettes" / rel)


@pytest.fixture(scope="module")
def vcr_config(vcr_cassette_dir: str) -> dict[str, Any]:
    return {
        "cassette_library_dir": vcr_cassette_dir,
        "record_mode": "none",
        "filter_headers": list(FILTERED_HEADERS.items()),
        "filter_query_parameters": ["key"],
        "before_record_request": filter_request,
        "before_record_response": filter_response,
        "match_on": ["method", "scheme", "host", "port", "path"],
    }


def pytest_recording_configure(config: pytest.Config, vcr: Any) -> None:
    """Per-cassette VCR hook: normalising host matcher + playback only."""
    vcr.register_matcher("host", host_matcher)
    vcr.register_matcher("bedrock_host", host_matcher)
    playback = vcr.use_cassette

    def use_cassette(path: Any = None, **kwargs: Any) -> Any:
        # A ``@pytest.mark.vcr(record_mode="once")`` would otherwise allow
        # recording when a cassette is missing.
        kwargs["record_mode"] = "none"
        return playback(path, **kwargs)

    vcr.use_cassette = use_cassette


# --------------------------------------------------------------------------
# Deselection list
# --------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--upstream-deselect-file",
        action="store",
        default=None,
        help="File of node ids ('id  # reason' per line) to deselect; every id "
        "whose module is collected must exist.",
    )
    parser.addoption(
        "--upstream-python-old-sqlite-file",
        action="store",
        default=None,
        help="File of node ids that fail only where crewai's database component runs on "
        "Python and the system SQLite lacks jsonb (< 3.45): marked xfail(strict) there.",
    )


def _database_on_python() -> bool:
    """Whether crewai's SQLite stores run on upstream's sqlite3 in this run."""
    try:
        import crewai_rust
    except ImportError:  # plain upstream crewai
        return True
    return crewai_rust.component_status()["database"].backend == "python"


def _mark_python_old_sqlite(config: pytest.Config, items: list[pytest.Item]) -> None:
    path = config.getoption("--upstream-python-old-sqlite-file")
    if not path:
        return
    import sqlite3

    entries = set(read_deselect_file(path))
    found = {item.nodeid for item in items} & entries
    if not hasattr(config, "workerinput") and found != entries:
        collected_files = {item.nodeid.split("::", 1)[0] for item in items}
        stale = sorted(e for e in entries - found if e.split("::", 1)[0] in collected_files
                       or not (config.rootpath / e.split("::", 1)[0]).exists())
        if stale:
            raise pytest.UsageError(f"entries in {path} no longer exist:\n  " + "\n  ".join(stale))
    if not (_database_on_python() and sqlite3.sqlite_version_info < (3, 45)):
        return
    marker = pytest.mark.xfail(
        reason=f"system SQLite {sqlite3.sqlite_version} lacks jsonb (the rust backend bundles SQLite >= 3.45)",
        raises=sqlite3.OperationalError,
        strict=True,
    )
    for item in items:
        if item.nodeid in entries:
            item.add_marker(marker)


def read_deselect_file(path: str | os.PathLike[str]) -> list[str]:
    """Node ids from ``path``: one per line, ``  # reason`` after two or more spaces, ``#`` lines are comments."""
    ids: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        entry = re.split(r"\s{2,}#", line.strip(), maxsplit=1)[0].strip()
        if entry and not entry.startswith("#"):
            ids.append(entry)
    return ids


def _deselect_entries(config: pytest.Config) -> list[str]:
    cached = getattr(config, "_upstream_deselect_entries", None)
    if cached is None:
        path = config.getoption("--upstream-deselect-file")
        cached = read_deselect_file(path) if path else []
        config._upstream_deselect_entries = cached  # type: ignore[attr-defined]
    return cached


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Entries without ``::`` name whole modules that cannot even be imported."""
    modules = {e for e in _deselect_entries(config) if "::" not in e}
    if not modules:
        return None
    try:
        rel = collection_path.relative_to(config.rootpath).as_posix()
    except ValueError:
        return None
    return True if rel in modules else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _mark_python_old_sqlite(config, items)
    entries = _deselect_entries(config)
    if not entries:
        return
    path = config.getoption("--upstream-deselect-file")
    dupes = sorted({e for e in entries if entries.count(e) > 1})
    if dupes:
        raise pytest.UsageError(f"duplicate entries in {path}: {dupes}")
    # Staleness: an entry is stale when its file is gone, or its file was
    # collected but the id was not.  Checked in the collecting process only
    # when not an xdist worker (a UsageError there crashes the xdist
    # controller); run_upstream.py runs this check in a single-process
    # collect-only pass first.
    if not hasattr(config, "workerinput"):
        present = {item.nodeid for item in items}
        collected_files = {nodeid.split("::", 1)[0] for nodeid in present}
        stale = []
        for entry in entries:
            file_part = entry.split("::", 1)[0]
            if not (config.rootpath / file_part).exists() or "::" in entry and entry not in present and file_part in collected_files:
                stale.append(entry)
        if stale:
            raise pytest.UsageError(
                f"{len(stale)} entr(y/ies) in {path} no longer exist:\n  "
                + "\n  ".join(stale)
            )
    wanted = set(entries)
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        (drop if item.nodeid in wanted else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["upstream_deselected"] = [item.nodeid for item in drop]


class _DeselectedId:
    """Stand-in for an item deselected inside an xdist worker."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: count the workers' deselections in the summary line.

    xdist does not forward deselections made during worker collection, so the
    final "N deselected" would be missing.  Every worker collects (and
    deselects) the same items, so report each id once.
    """
    ids = getattr(node, "workeroutput", {}).get("upstream_deselected") or []
    config = node.config
    seen: set[str] = config.__dict__.setdefault("_upstream_deselected_seen", set())
    fresh = [nodeid for nodeid in ids if nodeid not in seen]
    if fresh:
        seen.update(fresh)
        config.hook.pytest_deselected(items=[_DeselectedId(n) for n in fresh])


# --------------------------------------------------------------------------
# Per-test isolation
# --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_environment() -> Iterator[None]:
    """Fresh HOME / XDG dirs / CREWAI_STORAGE_DIR / cwd per test; env and cwd restored afterwards."""
    saved = dict(os.environ)
    saved_cwd = os.getcwd()
    root = Path(tempfile.mkdtemp(prefix="test-", dir=_tmp_base()))
    try:
        _point_home_at(root / "home")
        # Tests write into the working directory (crew.train() drops
        # training_data.pkl / trained_agents_data.pkl there, and agents read
        # trained_agents_data.pkl back from it).
        (root / "cwd").mkdir()
        os.chdir(root / "cwd")
        storage = root / "crewai_test_storage"
        storage.mkdir()
        os.environ["CREWAI_STORAGE_DIR"] = str(storage)
        os.environ["CREWAI_TESTING"] = "true"
        os.environ["CREWAI_DISABLE_TELEMETRY"] = "true"
        os.environ["OTEL_SDK_DISABLED"] = "true"
        yield
    finally:
        # Background compaction reads the environment from native threads
        # (LanceDB's tokio runtime), and setenv/unsetenv racing a native
        # getenv can crash the process: let it finish before the restore.
        _join_background_compaction()
        os.chdir(saved_cwd)
        _restore_environ(saved)


# Threads upstream starts and does not wait for: LanceDBStorage._compact_async.
BACKGROUND_COMPACTION_THREADS = ("lancedb-compact",)
BACKGROUND_COMPACTION_WAIT = 60.0


def _join_background_compaction() -> None:
    """Wait for upstream's fire-and-forget compaction threads started by the test."""
    deadline = time.monotonic() + BACKGROUND_COMPACTION_WAIT
    for thread in threading.enumerate():
        if thread.name in BACKGROUND_COMPACTION_THREADS and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                warnings.warn(
                    f"upstream harness: background thread {thread.name!r} still running after "
                    f"{BACKGROUND_COMPACTION_WAIT:.0f}s; restoring the environment anyway",
                    stacklevel=1,
                )


def _restore_environ(saved: dict[str, str]) -> None:
    """Put the environment back touching only the variables that changed.

    Each setenv/unsetenv is a window in which a native thread's getenv can
    read freed memory; clearing and refilling the whole environment opened
    one window per variable after every test.
    """
    for name in [name for name in os.environ if name not in saved]:
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _reset_event_bus_handlers() -> Iterator[None]:
    """Drop handlers registered on the global event bus during the test."""
    yield
    try:
        from crewai.events.event_bus import crewai_event_bus
    except ImportError:
        return
    with crewai_event_bus._rwlock.w_locked():
        crewai_event_bus._sync_handlers.clear()
        crewai_event_bus._async_handlers.clear()


@pytest.fixture(autouse=True)
def _reset_trace_listener() -> Iterator[None]:
    """Forget the TraceCollectionListener singleton (it caches a batch manager)."""
    yield
    try:
        from crewai.events.listeners.tracing.trace_listener import (
            TraceCollectionListener,
        )
    except ImportError:
        return
    TraceCollectionListener._instance = None


@pytest.fixture(autouse=True)
def _reset_event_context() -> None:
    """Start every test with an empty event-id stack and default context config."""
    try:
        from crewai.events.base_events import reset_emission_counter
        from crewai.events.event_context import (
            EventContextConfig,
            _event_context_config,
            _event_id_stack,
        )
    except ImportError:
        return
    reset_emission_counter()
    _event_id_stack.set(())
    _event_context_config.set(EventContextConfig())


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "telemetry: mark test as a telemetry test (don't mock telemetry)"
    )


if not _ACTIVE:
    # Not next to an upstream tests/ tree (e.g. collected as part of our own
    # repository's tests): expose no hooks or fixtures at all.
    for _name in [
        n for n in list(globals()) if n.startswith(("pytest_", "_reset_"))
    ] + ["vcr_cassette_dir", "vcr_config", "_isolated_environment"]:
        del globals()[_name]
    del _name
