"""compose.yaml: valid Compose, and the stack's rules (Triton internal, api on 8000, GPU for Triton).

Validated against the Compose specification's JSON schema, vendored in tests/fixtures/compose/ (see
its README for where it comes from and how to update it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from speechlib.interfaces import TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json"


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))


def schema_errors(validator: jsonschema.Draft7Validator, document: dict) -> list[str]:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_valid_against_the_compose_schema(compose, compose_validator):
    assert not schema_errors(compose_validator, compose)


def test_the_schema_catches_typos_and_wrong_types(compose_validator):
    """The vendored schema is a real check: a misspelt key and a wrong type in our file are refused."""
    typo = load_compose()
    typo["services"]["api"]["port"] = typo["services"]["api"].pop("ports")
    assert schema_errors(compose_validator, typo)
    wrong = load_compose()
    wrong["services"]["api"]["restart"] = ["always"]
    assert schema_errors(compose_validator, wrong)


def strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def test_interpolations_are_well_formed(compose):
    """Every ``$`` in a value is ``$$``, ``${VAR}``, ``${VAR:-default}`` or ``${VAR:?error}``."""
    for text in strings(compose):
        for match in re.finditer(r"\$\$|\$(\{[^}]*\}|\w*)", text):
            if match.group(0) != "$$":
                assert re.fullmatch(r"\{[A-Za-z_]\w*(:?[-?][^}]*)?\}", match.group(1)), (text, match.group(0))


def test_services_and_references(compose):
    services = compose["services"]
    assert {"triton", "redis", "postgres", "api", "worker", "agent", "prometheus"} <= set(services)
    declared_volumes = set(compose.get("volumes", {}))
    declared_configs = set(compose.get("configs", {}))
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown service {dep}"
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if source and not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name} mounts undeclared volume {source}"
        for cfg in svc.get("configs", []):
            assert (cfg if isinstance(cfg, str) else cfg["source"]) in declared_configs


def test_triton_is_internal_and_gets_the_gpu(compose):
    triton = compose["services"]["triton"]
    assert "ports" not in triton, "Triton must not publish ports: the api is the only entry point"
    command = " ".join(triton["command"]) if isinstance(triton["command"], list) else triton["command"]
    for flag in (
        "--model-repository=/models",
        "--model-config-name=gpu",
        f"--http-port={TRITON_HTTP_PORT}",
        f"--grpc-port={TRITON_GRPC_PORT}",
        f"--metrics-port={TRITON_METRICS_PORT}",
    ):
        assert flag in command.split(), flag
    assert any(v.startswith("./model_repository:/models") for v in triton["volumes"])
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert "tritonserver" in triton["image"]


def test_only_the_api_is_public(compose):
    services = compose["services"]
    assert "8000:8000" in [str(p) for p in services["api"]["ports"]]
    for name, svc in services.items():
        if name in {"api", "livekit"}:  # LiveKit's WebRTC ports must reach browsers
            continue
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    grpc = f"triton:{TRITON_GRPC_PORT}"
    for name in ("api", "worker", "agent"):
        assert services[name]["environment"]["TRITON_GRPC_URL"] == grpc


def test_worker_reads_the_diarization_parameters_from_a_read_only_mount(compose):
    """A worker has no model_repository/ checkout: the build's parameter folder is mounted and
    DIARIZATION_PARAMS_DIR points at it (api/core/config.py)."""
    for name in ("worker", "api"):
        svc = compose["services"][name]
        target = svc["environment"]["DIARIZATION_PARAMS_DIR"]
        mounts = [v for v in svc["volumes"] if isinstance(v, str)]
        assert f"./model_repository/speaker_embedding/1:{target}:ro" in mounts, (name, mounts)
    # the mounted folder is the one a checkout reads by default (where `make models` installs them)
    from api.core.config import Settings

    default = Settings(_env_file=None, diarization_params_dir="").resolved_diarization_params_dir
    assert default == ROOT / "model_repository" / "speaker_embedding" / "1"


def test_agent_gets_no_database_or_redis(compose):
    """The agent reaches data only through the api (docs/architecture.md)."""
    agent = compose["services"]["agent"]
    assert "env_file" not in agent
    assert not {"DATABASE_URL", "REDIS_URL", "POSTGRES_PASSWORD"} & set(agent["environment"])
    assert not {"postgres", "redis"} & set(agent.get("depends_on", {}))
