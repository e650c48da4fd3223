"""The Makefile's compose targets (the original README's `make up`, `make logs-stt-service`, ...).

Docker is not available here: a `docker` shim first on PATH records each call's arguments (one JSON
line per call), so each target is checked for the exact `docker compose ...` it runs. `make init` is
run for real into a temporary file, without a terminal, with answers in the environment, and at a
terminal (a pseudo-terminal) that answers its questions.
"""

from __future__ import annotations

import json
import os
import pty
import select
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from api.core.config import AuthMode, Settings
from tests.env_example import ENV_EXAMPLE

ROOT = Path(__file__).resolve().parents[1]
SHIM = """#!{python}
import json, os, sys
with open(os.environ["DOCKER_SHIM_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if "ps" in sys.argv and "-q" in sys.argv:
    print("c0ffee1\\nc0ffee2")
"""
# docker expands the two characters \t of a table format into a tab itself (as in its docs)
PS_FORMAT = r"table {{.Service}}\t{{.State}}\t{{.Health}}\t{{.Status}}"
# names the caller's shell might have set, which make and the init script read
CLEAN = {
    "AUTH_MODE",
    "SUPABASE_URL",
    "DATABASE_URL",
    "JWT_SECRET",
    "FORCE",
    "ENV_FILE",
    "N",
    "COMPOSE",
    "MAKEFLAGS",
    "BENCH_ARGS",
}


@pytest.fixture
def shim(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(SHIM.format(python=sys.executable))
    docker.chmod(0o755)
    log = tmp_path / "docker.log"
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", DOCKER_SHIM_LOG=str(log))

    def make(*args: str, **extra: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
        log.unlink(missing_ok=True)
        r = subprocess.run(
            ["make", "--no-print-directory", "-C", str(ROOT), *args],
            env={**env, **extra},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return r, calls

    return make


DEV = ["compose", "-f", "compose.yaml", "-f", "compose.dev.yaml"]
ALL = ["compose", "--profile", "*"]  # every profile: agents started by `make agent` included
CASES = {
    ("up",): [["compose", "up", "-d", "--build"]],
    ("down",): [[*ALL, "down"]],
    ("dev",): [[*DEV, "up", "-d", "--build"]],
    ("logs",): [[*ALL, "logs", "-f", "--tail=200"]],
    ("logs-api",): [[*ALL, "logs", "-f", "--tail=200", "api"]],
    ("logs-stt-service",): [[*ALL, "logs", "-f", "--tail=200", "triton"]],
    ("logs-diarization-service",): [[*ALL, "logs", "-f", "--tail=200", "triton"]],
    ("restart-worker",): [[*ALL, "restart", "worker"]],
    ("restart-api-service",): [[*ALL, "restart", "api"]],
    ("update-api",): [["compose", "up", "-d", "--build", "--no-deps", "api"]],
    ("update-stt-service",): [["compose", "up", "-d", "--build", "--no-deps", "triton"]],
    ("agent",): [["compose", "--profile", "agent", "up", "-d", "agent"]],
    ("agent-stop",): [["compose", "--profile", "agent", "stop", "agent"]],
    ("agent-scale", "N=4"): [
        ["compose", "--profile", "agent", "up", "-d", "--no-deps", "--scale", "agent=4", "agent"]
    ],
    ("health",): [[*ALL, "ps", "--all", "--format", PS_FORMAT]],
    ("status",): [[*ALL, "ps", "--all"]],
    ("stats",): [[*ALL, "ps", "-q"], ["stats", "--no-stream", "c0ffee1", "c0ffee2"]],
}


@pytest.mark.parametrize("args", list(CASES), ids=" ".join)
def test_target_runs_docker_compose(shim, args):
    r, calls = shim(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert calls == CASES[args]


def test_logs_restart_update_take_every_service(shim):
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    services |= yaml.safe_load((ROOT / "compose.dev.yaml").read_text())["services"]
    targets = [f"{verb}-{name}" for name in services for verb in ("logs", "restart", "update")]
    r, calls = shim("-k", *targets)
    assert r.returncode == 0, r.stderr
    assert [c[-1] for c in calls] == [t.split("-", 1)[1] for t in targets]


def test_agent_scale_refuses_a_bad_count(shim):
    r, calls = shim("agent-scale", "N=many")
    assert r.returncode != 0 and "N must be a number" in r.stderr and calls == []


def test_the_compose_files_the_targets_name_exist():
    assert (ROOT / "compose.yaml").is_file() and (ROOT / "compose.dev.yaml").is_file()


def test_help_lists_the_targets(shim):
    r, calls = shim("help")
    listed = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("  make ")}
    original = {"init", "up", "down", "dev", "logs", "logs-SERVICE", "restart-SERVICE", "update-SERVICE"}
    original |= {"agent", "agent-stop", "agent-scale", "health", "stats", "status", "test"}
    ours = {"run", "models", "test-quick", "download-models", "export-real", "triton", "bench", "help"}
    assert original | ours <= listed, sorted(original | ours - listed)
    assert calls == []


# -- make bench ------------------------------------------------------------------------------------
# bench/run_all.py runs the four benches and rewrites docs/benchmarks.md's targets block. The benches
# themselves take minutes to hours: here `--dry-run` (nothing runs) and `--from DIR` (the table from
# JSON files in the shapes the benches write, values chosen here) are checked.

BENCH_RESULTS = {
    "asr": {
        "info": {
            "asr_model": "/c/models/sensevoice_full-3f7424a9007e3720",
            "vad_model": "/c/models/fsmn_vad-0123456789abcdef",
        },
        "latency": {
            "1x2": {"calls": 20, "p50_s": 0.52, "p95_s": 0.61, "max_s": 0.7},
            "2x1": {"calls": 20, "p50_s": 0.401, "p95_s": 0.412, "max_s": 0.5},
        },
    },
    "diarization": {
        "artifact": "pyannote_full",
        "seconds": 300.0,
        "peak_rss_mib": {
            "client": 434.0,
            "server_total": 546.2,
            "stub:segmentation": 164.0,
            "stub:speaker_embedding": 290.4,
            "tritonserver": 129.0,
        },
        "latency_60s": {"calls": 10, "p50": 16.94, "p95": 18.5},
    },
    "transcription": {
        "info": {
            "asr_model": "/c/models/sensevoice_fixture-aaaaaaaaaaaaaaaa",
            "diarization_model": "/c/models/pyannote_fixture-bbbbbbbbbbbbbbbb",
        },
        "memory": {
            "1 h": {
                "peak_rss_mib": {"stub:vad": 281.0, "stub:asr": 362.0, "tritonserver": 297.0},
                "exact": True,
            },
            "2 h": {
                "peak_rss_mib": {"stub:vad": 277.0, "stub:asr": 353.0, "tritonserver": 321.0},
                "exact": True,
            },
        },
    },
    "summary": {
        "model": "SmolLM2-135M-Instruct",
        "threads": 1,
        "runs": [
            {"seconds": 15.3, "error": None},
            {"seconds": 5.6, "error": None},
            {"seconds": 9.4, "error": None},
        ],
        "median_s": 9.4,
        "failed_runs": 0,
    },
    "agent": {
        "info": {
            "asr_model": "/c/models/sensevoice_full-3f7424a9007e3720",
            "vad_model": "/c/models/fsmn_vad-0",
        },
        "runs": [
            {
                "speakers": 1,
                "finals": 8,
                "latency": {
                    "agent": {"n": 8, "p50_ms": 0.44, "p95_ms": 1.26, "max_ms": 2.0},
                    "after_vad": {"n": 8, "p50_ms": 301.0, "p95_ms": 412.0, "max_ms": 420.0},
                },
            },
            {
                "speakers": 8,
                "finals": 64,
                "latency": {
                    "agent": {"n": 64, "p50_ms": 9.0, "p95_ms": 30.0, "max_ms": 40.0},
                    "after_vad": {"n": 64, "p50_ms": 900.0, "p95_ms": 1500.0, "max_ms": 1600.0},
                },
            },
        ],
        "memory": {
            "pipelines": 8,
            "one": {"peak_rss_mib": 180.4},
            "per_participant_mib": {"peak_rss_mib": 2.31},
        },
    },
}
# what the table must say for BENCH_RESULTS (by hand from the numbers above)
BENCH_ROWS = {
    "STT Transcription": "**p50 0.40 s / p95 0.41 s**",  # the faster layout, 2x1
    "Speaker Diarization": "**p50 16.94 s / p95 18.50 s**",
    "AI Summarization": "**median 9.4 s**",
    "Diarization Service": "**segmentation 164 MiB + speaker_embedding 290 MiB (tritonserver 129 MiB)**",
    "STT Service": "**asr 353 MiB + vad 277 MiB (tritonserver 321 MiB, all models)**",  # the longest audio
    "LiveKit Agent Response": "**agent p50 0.4 ms / p95 1.3 ms**",  # the first run (1 speaker)
    "LiveKit Agent": "**180 MiB with one participant, +2.3 MiB per further one**",
}
DOC_TEXT = "# Benchmarks\n\nIntro by hand.\n\n## ASR\n\nHand-written section.\n"


def bench_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def table_row(doc: str, row: str) -> str:
    return next(line for line in doc.splitlines() if line.startswith(f"| {row} |"))


def test_make_bench_dry_run_prints_the_commands_and_changes_nothing(shim, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC_TEXT)
    r, calls = shim("bench", f"BENCH_ARGS=--dry-run --quick --doc {doc}")
    assert r.returncode == 0, r.stdout + r.stderr
    commands = [line for line in r.stdout.splitlines() if " bench/" in line and "_bench.py" in line]
    assert [c.split()[1] for c in commands] == [
        "bench/asr_bench.py",
        "bench/diarization_bench.py",
        "bench/transcription_bench.py",
        "bench/summary_bench.py",
        "bench/agent_bench.py",
    ]
    assert all("--json" in c for c in commands) and "--quick" in commands[0]
    assert "| STT Transcription | < 2 s | not measured here" in r.stdout
    assert doc.read_text() == DOC_TEXT and calls == []


def test_bench_table_is_generated_in_place_and_idempotently(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for name, raw in BENCH_RESULTS.items():
        (results / f"{name}.json").write_text(json.dumps(raw))
    doc = tmp_path / "benchmarks.md"
    doc.write_text(DOC_TEXT)

    r = bench_cli("--from", str(results), "--doc", str(doc))
    assert r.returncode == 0, r.stderr
    first = doc.read_text()
    head, rest = first.split("<!-- BEGIN make bench", 1)
    assert head == "# Benchmarks\n\nIntro by hand.\n\n## Targets of the original README (`make bench`)\n\n"
    assert rest.split("<!-- END make bench -->", 1)[1] == "\n\n## ASR\n\nHand-written section.\n"
    for row, value in BENCH_ROWS.items():
        assert value in table_row(first, row), table_row(first, row)
    assert "sensevoice_full" in table_row(first, "STT Transcription")
    assert "random dev weights" in table_row(first, "STT Transcription")
    assert "trained on espeak voices" in table_row(first, "STT Service")
    for row in ("API Service", "AI Service"):
        assert "| not measured here: " in table_row(first, row)

    # again: byte for byte the same page
    r = bench_cli("--from", str(results), "--doc", str(doc))
    assert r.returncode == 0 and "unchanged" in r.stdout and doc.read_text() == first

    # --only: that bench's rows change, the others keep their values (from the block's data line)
    faster = tmp_path / "faster"
    faster.mkdir()
    (faster / "summary.json").write_text(json.dumps({**BENCH_RESULTS["summary"], "median_s": 4.3}))
    r = bench_cli("--only", "summary", "--from", str(faster), "--doc", str(doc))
    assert r.returncode == 0, r.stderr
    second = doc.read_text()
    assert "**median 4.3 s**" in table_row(second, "AI Summarization")
    for row in (
        "STT Transcription",
        "Speaker Diarization",
        "STT Service",
        "Diarization Service",
        "LiveKit Agent",
    ):
        assert table_row(second, row) == table_row(first, row)
    assert second.count("<!-- BEGIN make bench") == 1 and second.count("<!-- END make bench -->") == 1


def test_bench_rejects_an_unknown_bench():
    r = bench_cli("--only", "asr,gpu", "--dry-run")
    assert r.returncode == 2 and "unknown bench" in r.stderr


def test_committed_benchmarks_block_is_what_run_all_renders():
    from bench import run_all

    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count(run_all.BEGIN) == 1 and text.count(run_all.END) == 1
    assert run_all.update_doc(text, run_all.read_block(text)) == text, "rerun bench/run_all.py --from ..."


# -- make init ----------------------------------------------------------------------------------------

GENERATED = (
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "OPERATOR_TOKEN",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
)


def settings_from(path: Path) -> Settings:
    return Settings(_env_file=path, **{})


def clear_settings_env(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_init_without_a_terminal_writes_embedded_mode_with_fresh_secrets(shim, tmp_path, monkeypatch):
    clear_settings_env(monkeypatch)
    first, second = tmp_path / "first.env", tmp_path / "second.env"
    for path in (first, second):
        r, calls = shim("init", ENV_FILE=str(path))
        assert r.returncode == 0, r.stdout + r.stderr
        assert calls == []
    example, a, b = dotenv_values(ENV_EXAMPLE), dotenv_values(first), dotenv_values(second)
    assert list(a) == list(example)  # every line of the example, in order
    changed = {k for k in example if a[k] != example[k]}
    assert changed == {*GENERATED, "JWT_SECRET"}
    for name in changed:
        assert a[name] != b[name], f"{name} is not random"
    assert len(a["LIVEKIT_API_SECRET"]) >= 32 and len(a["JWT_SECRET"]) >= 32
    assert a["COMPOSE_PROFILES"] == "postgres,monitoring"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    settings = settings_from(first)
    assert settings.auth_mode is AuthMode.embedded
    assert settings.jwt_secret.get_secret_value() == a["JWT_SECRET"]


def test_init_keeps_an_existing_env_unless_forced(shim, tmp_path):
    path = tmp_path / ".env"
    path.write_text("KEEP=me\n")
    r, _ = shim("init", ENV_FILE=str(path))
    assert r.returncode == 0 and "kept" in r.stdout and path.read_text() == "KEEP=me\n"
    r, _ = shim("init", ENV_FILE=str(path), FORCE="1")
    assert r.returncode == 0 and "KEEP" not in path.read_text()


def test_init_supabase_from_the_environment(shim, tmp_path, monkeypatch):
    clear_settings_env(monkeypatch)
    path = tmp_path / ".env"
    db = "postgresql+psycopg://postgres:p%40ss@db.abc.supabase.co:5432/postgres"
    r, _ = shim(
        "init",
        ENV_FILE=str(path),
        AUTH_MODE="supabase",
        SUPABASE_URL="https://abc.supabase.co",
        DATABASE_URL=db,
    )
    assert r.returncode == 0, r.stderr
    values = dotenv_values(path)
    assert values["COMPOSE_PROFILES"] == "monitoring"  # no local Postgres
    settings = settings_from(path)
    assert settings.auth_mode is AuthMode.supabase and settings.database_url == db
    assert settings.resolved_jwks_url == "https://abc.supabase.co/auth/v1/.well-known/jwks.json"
    assert settings.jwt_secret.get_secret_value() == ""  # JWKS-signed tokens only


def test_init_refuses_an_unknown_mode(shim, tmp_path):
    path = tmp_path / ".env"
    r, _ = shim("init", ENV_FILE=str(path), AUTH_MODE="ldap")
    assert r.returncode != 0 and "embedded or supabase" in r.stderr and not path.exists()


def test_init_asks_at_a_terminal(tmp_path, monkeypatch):
    """At a terminal `make init` asks for the auth mode (and Supabase's URL, database and secret)."""
    clear_settings_env(monkeypatch)
    path = tmp_path / ".env"
    env = {k: v for k, v in os.environ.items() if k not in CLEAN}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(ROOT), "init"],
        env={**env, "ENV_FILE": str(path)},
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    answers = [
        "supabase",
        "https://xyz.supabase.co",
        "postgresql+psycopg://postgres:pw@db.xyz.supabase.co:5432/postgres",
        "s3cr3t" * 6,
    ]
    transcript = b""
    try:
        for answer in answers:
            while b"? [" not in transcript.rsplit(b"\n", 1)[-1]:
                ready, _, _ = select.select([master], [], [], 30)
                assert ready, f"no question: {transcript!r}"
                transcript += os.read(master, 4096)
            os.write(master, answer.encode() + b"\n")
            transcript += b"\n"
        assert proc.wait(timeout=30) == 0
        while select.select([master], [], [], 0.2)[0]:
            try:
                transcript += os.read(master, 4096)
            except OSError:
                break
    finally:
        proc.kill()
        os.close(master)
    text = transcript.decode(errors="replace")
    assert "Auth mode: embedded" in text and "Supabase project URL" in text
    settings = settings_from(path)
    assert settings.auth_mode is AuthMode.supabase
    assert settings.supabase_url == "https://xyz.supabase.co"
    assert settings.database_url.startswith("postgresql+psycopg://postgres:pw@db.xyz")
    assert settings.jwt_secret.get_secret_value() == "s3cr3t" * 6
