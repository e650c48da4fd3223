"""Schema-driven fuzzing of every operation in the OpenAPI document (schemathesis), against the app
with its real dependencies: PostgreSQL, Redis (queue, live data, rate-limit counts) and a
tritonserver with the dev fsmn-VAD models (what /health and /info ask).

Each generated request (valid and invalid inputs) is sent three times: with a user's access token,
with one of their API keys, and with no credential. It must never produce a 500, and a response
whose status the document describes must match its schema. Another 5xx passes only where the
operation's OpenAPI entry documents it (503 from /health when a dependency is down). A new route
is fuzzed from its first day: the test walks the document, not a list.

Bounded: ``FUZZ_EXAMPLES`` examples per operation (hypothesis, derandomized so CI is repeatable;
set INTRASCRIBE_FUZZ_EXAMPLES / INTRASCRIBE_FUZZ_SEED to dig deeper locally), and per operation in
time: after ``FUZZ_OP_SECONDS`` from its first case an operation's further cases are not sent (and
counted), but never before ``FUZZ_MIN_EXAMPLES`` were — so every operation is reached however loaded
the machine is (a bound for the whole module let the first ~17 of 70 operations use it all up).
"""

from __future__ import annotations

import collections
import os
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import TestPhase
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.core.auth import AUTH_PREFIX
from api.main import create_app
from tests.api.conftest import LoopbackServer, make_settings, register

FUZZ_EXAMPLES = int(os.environ.get("INTRASCRIBE_FUZZ_EXAMPLES", "50"))
FUZZ_AUTH_EXAMPLES = max(1, FUZZ_EXAMPLES // 3)
# Wall-clock bound per operation (from its first case): later cases are not sent (and counted),
# once at least FUZZ_MIN_EXAMPLES of it were.
FUZZ_OP_SECONDS = float(os.environ.get("INTRASCRIBE_FUZZ_OP_SECONDS", "2"))
FUZZ_MIN_EXAMPLES = min(FUZZ_EXAMPLES, 8)
_OP_STARTED: dict[str, float] = {}
_OP_SENT: collections.Counter = collections.Counter()
OPERATOR_TOKEN = "fuzz-operator-" + "t" * 24
STATS: collections.Counter = collections.Counter()
STATUSES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory, api_pg_url, redis_url, redis_prefix, triton_vad):
    data_dir = tmp_path_factory.mktemp("fuzz")
    settings_ = make_settings(
        data_dir,
        database_url=api_pg_url,
        redis_url=redis_url,
        redis_prefix=f"{redis_prefix}fuzz:",
        queue_backend="redis",
        triton_http_url=f"http://{triton_vad.ports.http_url}",
        triton_models=["vad", "vad_stream"],
        operator_token=OPERATOR_TOKEN,
        max_upload_bytes=256 * 1024,
        sse_max_stream_seconds=2.0,
    )
    with (
        LoopbackServer(create_app(settings_)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        user = register(client)
        r = client.post("/api/v1/api-keys", json={"name": "fuzz"}, headers=user["headers"])
        assert r.status_code == 201, r.text
        server.credentials = {
            "token": user["headers"],
            "api_key": {"X-API-Key": r.json()["key"]},
            "none": {},
        }
        health = client.get("/health", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert health.status_code == 200, f"the dependencies are not all up: {health.json()}"
        yield server


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_server):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    # schemathesis' coverage phase builds every boundary case of every operation up front: ~4 min
    # of CPU here for 28 operations, more than this test's budget. The fuzzing phase (valid and
    # invalid inputs, derandomized) runs instead; the boundary cases that once gave 500s are
    # spelled out in test_hardening.py.
    schema.config.phases.coverage.enabled = False
    return schema


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    if not STATS:
        return
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    lines = [
        f"fuzz: {len(STATUSES)} operations, {STATS['examples']} examples, {STATS['calls']} calls, "
        f"{STATS['5xx']} 5xx (of which undocumented: {STATS['5xx_undocumented']}), "
        f"{STATS['cut_by_time']} cases not sent (past INTRASCRIBE_FUZZ_OP_SECONDS={FUZZ_OP_SECONDS:g} "
        f"per operation, after {FUZZ_MIN_EXAMPLES} sent)"
    ]
    for op, counts in sorted(STATUSES.items()):
        lines.append(f"  {op}: " + ", ".join(f"{k}×{v}" for k, v in sorted(counts.items())))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter and capture:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + "\n".join(lines))


schema = schemathesis.pytest.from_fixture("fuzz_schema")


def _documented(case, status: int) -> bool:
    responses = case.operation.definition.raw.get("responses", {})
    return str(status) in responses or f"{str(status)[0]}XX" in responses


def _without_credentials(case) -> None:
    if case.headers:
        for name in list(case.headers):
            if name.lower() in ("authorization", "x-api-key"):
                del case.headers[name]


def _exercise(case, calls: dict[str, dict[str, str]]) -> None:
    op = case.operation.label
    started = _OP_STARTED.setdefault(op, time.monotonic())
    if _OP_SENT[op] >= FUZZ_MIN_EXAMPLES and time.monotonic() - started > FUZZ_OP_SECONDS:
        STATS["cut_by_time"] += 1  # reported: the run stays bounded on a slow machine
        return
    _OP_SENT[op] += 1
    STATS["examples"] += 1
    _without_credentials(case)
    if case.meta is not None and case.meta.phase.name == TestPhase.COVERAGE and "token" in calls:
        # The coverage phase's many boundary cases go in as the user only (the deepest path: every
        # scope); credentials themselves are varied by the fuzzing phase's cases.
        calls = {"token": calls["token"]}
    for who, headers in calls.items():
        if case.path in ("/health", "/info") and who == "token":
            headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}  # the detailed health body
        response = case.call(headers=headers)
        STATS["calls"] += 1
        STATUSES[case.operation.label][response.status_code] += 1
        checks = [response_schema_conformance]
        if response.status_code >= 500:
            STATS["5xx"] += 1
            if response.status_code == 500 or not _documented(case, response.status_code):
                STATS["5xx_undocumented"] += 1
                checks.append(not_a_server_error)
        case.validate_response(response, checks=checks)


_BOUNDED = dict(
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@schema.exclude(path_regex=f"^{AUTH_PREFIX}/").parametrize()
@settings(max_examples=FUZZ_EXAMPLES, **_BOUNDED)
def test_no_server_error(case, fuzz_server):
    """Every operation but register/login, as the user (token, API key) and as nobody."""
    _exercise(case, fuzz_server.credentials)


@schema.include(path_regex=f"^{AUTH_PREFIX}/").parametrize()
@settings(max_examples=FUZZ_AUTH_EXAMPLES, **_BOUNDED)
def test_no_server_error_on_public_auth(case, fuzz_server):
    """Register and login: public, so one call each; fewer examples, since every accepted one
    computes an argon2 hash (~0.1-0.7 s here) on purpose."""
    _exercise(case, {"none": {}})


def test_every_operation_was_fuzzed(fuzz_schema):
    """Runs after the two fuzzing tests above (pytest keeps a module's order): each operation of the
    document got at least one case sent, whatever the machine's load (see FUZZ_OP_SECONDS)."""
    labels = {result.ok().label for result in fuzz_schema.get_all_operations()}
    assert labels, "the OpenAPI document has no operations"
    missing = sorted(labels - set(STATUSES))
    assert not missing, f"operations never fuzzed: {missing}"
