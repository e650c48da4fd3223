"""compose.yaml: valid Compose, and the stack's rules (Triton internal, api on 8000, GPU for Triton).

Validated against the Compose specification's JSON schema when it is on disk (INTRASCRIBE_COMPOSE_SCHEMA,
shared/schemas/compose-spec.json in the checkout, or /work/shared/schemas/compose-spec.json). Without
it, a hand-written structural check runs instead and says so; it never skips.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import jsonschema
import pytest
import yaml

from speechlib.interfaces import TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
SCHEMA_CANDIDATES = [
    os.environ.get("INTRASCRIBE_COMPOSE_SCHEMA", ""),
    str(ROOT / "shared" / "schemas" / "compose-spec.json"),
    "/work/shared/schemas/compose-spec.json",
]

# Fallback when the official schema is absent: the service keys this file may use, and the shapes
# that matter. Typos (`port:`, `depend_on:`) and wrong types fail here as they would with the schema.
SERVICE_KEYS = {
    "build", "command", "configs", "container_name", "depends_on", "deploy", "entrypoint", "env_file",
    "environment", "expose", "healthcheck", "image", "labels", "logging", "networks", "profiles",
    "ports", "restart", "secrets", "shm_size", "ulimits", "user", "volumes", "working_dir",
}  # fmt: skip
FALLBACK_SCHEMA = {
    "type": "object",
    "required": ["services"],
    "patternProperties": {"^x-": {}},
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]*$"},
        "services": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "propertyNames": {"enum": sorted(SERVICE_KEYS)},
                "anyOf": [{"required": ["image"]}, {"required": ["build"]}],
                "properties": {
                    "image": {"type": "string"},
                    "command": {"type": ["string", "array"], "items": {"type": "string"}},
                    "ports": {"type": "array", "items": {"type": ["string", "integer", "object"]}},
                    "expose": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "volumes": {"type": "array", "items": {"type": ["string", "object"]}},
                    "environment": {"type": ["object", "array"]},
                    "depends_on": {"type": ["object", "array"]},
                    "profiles": {"type": "array", "items": {"type": "string"}},
                    "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
                    "healthcheck": {
                        "type": "object",
                        "properties": {"test": {"type": ["string", "array"]}},
                        "additionalProperties": {"type": ["string", "integer", "boolean"]},
                    },
                },
            },
        },
        "volumes": {"type": "object"},
        "configs": {"type": "object"},
        "networks": {"type": "object"},
    },
    "additionalProperties": False,
}


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def official_schema() -> dict | None:
    for candidate in SCHEMA_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return json.loads(Path(candidate).read_text())
    return None


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def test_valid_against_the_compose_schema(compose):
    schema = official_schema()
    if schema is None:
        warnings.warn(
            "Compose JSON schema not found; validated with the structural fallback only", stacklevel=1
        )
        schema = FALLBACK_SCHEMA
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_structural_fallback_also_passes_and_catches_typos(compose):
    """The fallback must accept the real file and reject a typo, so it is a real check when used."""
    jsonschema.validate(compose, FALLBACK_SCHEMA)
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["api"]["port"] = broken["services"]["api"].pop("ports")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, FALLBACK_SCHEMA)


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


def test_agent_gets_no_database_or_redis(compose):
    """The agent reaches data only through the api (ARCHITECTURE.md)."""
    agent = compose["services"]["agent"]
    assert "env_file" not in agent
    assert not {"DATABASE_URL", "REDIS_URL", "POSTGRES_PASSWORD"} & set(agent["environment"])
    assert not {"postgres", "redis"} & set(agent.get("depends_on", {}))
