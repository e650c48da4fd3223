"""compose.yaml and compose.dev.yaml: valid Compose, and the stack's rules.

Validated against the Compose specification's JSON schema, vendored in tests/fixtures/compose/ (see
its README for where it comes from and how to update it). Docker is not available here, so the
rules `docker compose config` would apply (merging the overlay, interpolation) are re-checked on the
parsed files: references, start order, what is published, what each container is told.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from speechlib.interfaces import TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT
from tests.env_example import SERVER_ONLY, sections, settings_env_names

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
COMPOSE_DEV = ROOT / "compose.dev.yaml"
COMPOSE_FILES = [COMPOSE, COMPOSE_DEV]
COMPOSE_SCHEMA = ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json"
# images built from this repository's Dockerfiles: their containers read only our settings
OUR_DOCKERFILES = {"docker/app.Dockerfile", "docker/triton.Dockerfile", "docker/export.Dockerfile"}
INTERNAL = {"triton", "redis", "postgres"}  # no auth of their own: never published


def load(path: Path = COMPOSE) -> dict:
    return yaml.safe_load(path.read_text())


def merge(base: object, overlay: object) -> object:
    """Compose's merge of an overlay file: mappings merge key by key, sequences append."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    if isinstance(base, list) and isinstance(overlay, list):
        return base + [v for v in overlay if v not in base]
    return overlay


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture(scope="module")
def dev() -> dict:
    return merge(load(COMPOSE), load(COMPOSE_DEV))


@pytest.fixture(scope="module", params=["compose.yaml", "compose.yaml+compose.dev.yaml"])
def stack(request) -> dict:
    base = load()
    return base if request.param == "compose.yaml" else merge(base, load(COMPOSE_DEV))


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))


def schema_errors(validator: jsonschema.Draft7Validator, document: dict) -> list[str]:
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


# -- schema and interpolation -----------------------------------------------------------------------


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_valid_against_the_compose_schema(path, compose_validator):
    assert not schema_errors(compose_validator, load(path))


def test_the_merged_stack_is_valid(dev, compose_validator):
    assert not schema_errors(compose_validator, dev)


def test_the_schema_catches_typos_and_wrong_types(compose_validator):
    """The vendored schema is a real check: a misspelt key and a wrong type in our file are refused."""
    typo = load()
    typo["services"]["api"]["port"] = typo["services"]["api"].pop("ports")
    assert schema_errors(compose_validator, typo)
    wrong = load()
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


def interpolated(text: str) -> list[str]:
    """Variable names of ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` (defaults may nest);
    ``$$`` is a literal. Any other ``$`` raises ValueError."""
    names = []
    i = 0
    while (i := text.find("$", i)) != -1:
        if text.startswith("$$", i):
            i += 2
            continue
        match = re.compile(r"\$\{([A-Za-z_]\w*)(?:(:?[-?+])|\})").match(text, i)
        if not match:
            raise ValueError(f"bad interpolation at {text[i:]!r} in {text!r}")
        names.append(match.group(1))
        i = match.end()
        if match.group(2):  # a default / error message up to the matching brace
            depth = 1
            start = i
            while depth:
                if i == len(text):
                    raise ValueError(f"unclosed ${{ in {text!r}")
                if text.startswith("${", i):
                    depth += 1
                    i += 1
                elif text[i] == "}":
                    depth -= 1
                i += 1
            names += interpolated(text[start : i - 1])
    return names


def test_interpolation_parser():
    assert interpolated("a ${X} $$HOME ${Y:-u${Z:?no}v} ${W-}") == ["X", "Y", "Z", "W"]
    for bad in ("$X", "${X", "${1X}", "${X:-a"):
        with pytest.raises(ValueError):
            interpolated(bad)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_variable_is_in_env_example(path):
    settings_section, compose_section = sections()
    used = {name for text in strings(load(path)) for name in interpolated(text)}
    assert used, "no ${VAR} found: the parser is broken"
    assert not used - set(settings_section) - set(compose_section)


def test_env_sourced_secrets_are_in_env_example(compose):
    settings_section, compose_section = sections()
    for secret in compose.get("secrets", {}).values():
        if "environment" in secret:
            assert secret["environment"] in {**settings_section, **compose_section}


# -- references and start order ---------------------------------------------------------------------


def depends(svc: dict) -> dict[str, dict]:
    deps = svc.get("depends_on", {})
    return {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps


def has_healthcheck(svc: dict) -> bool:
    check = svc.get("healthcheck")
    return bool(check) and not check.get("disable") and check.get("test") not in (["NONE"], "NONE")


def reference_errors(stack: dict) -> list[str]:
    services = stack["services"]
    errors = []
    for name, svc in services.items():
        for dep, spec in depends(svc).items():
            if dep not in services:
                errors.append(f"{name} depends on unknown service {dep}")
                continue
            target = services[dep]
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy" and not has_healthcheck(target):
                errors.append(f"{name} waits for {dep} to be healthy, but {dep} has no health check")
            if condition == "service_completed_successfully" and target.get("restart", "no") != "no":
                errors.append(f"{name} waits for {dep} to complete, but {dep} restarts")
            # a dependency left out by a profile the dependent does not share must be optional
            theirs, mine = set(target.get("profiles", [])), set(svc.get("profiles", []))
            if theirs and not (mine and mine <= theirs) and spec.get("required", True):
                errors.append(f"{name} requires {dep}, which only profiles {sorted(theirs)} start")
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            kind = "bind" if isinstance(vol, str) and source.startswith((".", "/")) else None
            kind = kind or (vol.get("type") if isinstance(vol, dict) else "volume")
            if kind == "volume" and source not in stack.get("volumes", {}):
                errors.append(f"{name} mounts undeclared volume {source}")
            if kind == "bind" and not (ROOT / source).exists():
                errors.append(f"{name} mounts {source}, which is not in the repository")
        for key in ("configs", "secrets"):
            for ref in svc.get(key, []):
                if (ref if isinstance(ref, str) else ref["source"]) not in stack.get(key, {}):
                    errors.append(f"{name} uses undeclared {key[:-1]} {ref}")
    return errors


def test_references_and_conditions(stack):
    assert not reference_errors(stack)


def test_reference_check_is_real(compose):
    broken = copy.deepcopy(compose)
    services = broken["services"]
    services["worker"]["depends_on"]["nowhere"] = {"condition": "service_started"}
    services["api"]["depends_on"]["worker"] = {"condition": "service_healthy"}  # no health check
    services["api"]["depends_on"]["redis"] = {"condition": "service_completed_successfully"}
    services["migrate"]["depends_on"]["postgres"].pop("required")  # profile `postgres` only
    services["triton"]["volumes"].append("no-such-volume:/x")
    assert len(reference_errors(broken)) == 5, reference_errors(broken)


def test_one_shot_services_run_first(compose):
    services = compose["services"]
    assert services["models"]["restart"] == "no" and services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["python", "-m", "api.db.migrate", "upgrade"]
    assert depends(services["triton"])["models"]["condition"] == "service_completed_successfully"
    for name in ("api", "worker"):
        deps = depends(services[name])
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["triton"]["condition"] == "service_healthy", name
        assert deps["redis"]["condition"] == "service_healthy", name
    assert depends(services["migrate"])["postgres"]["condition"] == "service_healthy"
    assert depends(services["agent"])["api"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_health_check_or_a_reason(compose):
    services = compose["services"]
    without = {n for n, s in services.items() if not has_healthcheck(s) and s.get("restart") != "no"}
    # the worker serves nothing over HTTP a probe could ask (its /metrics is not health); the agent
    # relays livekit-agents' own health on AGENT_HTTP_PORT (agent/health.py)
    assert without == {"worker"}


# -- what is published ------------------------------------------------------------------------------


def test_internal_services_publish_no_port(stack):
    for name in INTERNAL:
        assert "ports" not in stack["services"][name], f"{name} has no auth: it must not be published"


def test_only_the_api_is_public(stack):
    services = stack["services"]
    assert "8000:8000" in [str(p) for p in services["api"]["ports"]]
    for name, svc in services.items():
        if name in {"api", "livekit"}:  # LiveKit's WebRTC ports must reach browsers (dev overlay)
            continue
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert "livekit" not in load()["services"], "LiveKit's dev mode belongs in compose.dev.yaml only"


def test_scalable_services(stack):
    """worker and agent run as replicas (--scale): no fixed name, no host port."""
    for name in ("worker", "agent"):
        svc = stack["services"][name]
        assert "container_name" not in svc and "ports" not in svc, name
    assert not [n for n, s in stack["services"].items() if "container_name" in s]


# -- Triton -----------------------------------------------------------------------------------------


def test_triton_is_internal_and_gets_the_gpu(compose):
    triton = compose["services"]["triton"]
    command = " ".join(triton["command"]) if isinstance(triton["command"], list) else triton["command"]
    for flag in (
        "--model-repository=/models",
        "--model-config-name=gpu",
        f"--http-port={TRITON_HTTP_PORT}",
        f"--grpc-port={TRITON_GRPC_PORT}",
        f"--metrics-port={TRITON_METRICS_PORT}",
    ):
        assert flag in command.split(), flag
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert triton["shm_size"] and re.fullmatch(r"\d+(gb|g)", str(triton["shm_size"]).lower())
    assert f"http://127.0.0.1:{TRITON_HTTP_PORT}/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    assert triton["build"]["dockerfile"] == "docker/triton.Dockerfile"


def test_every_model_has_the_gpu_config_triton_is_told_to_use():
    models = [p.parent for p in ROOT.glob("model_repository/*/config.pbtxt")]
    assert len(models) >= 6
    for model in models:
        assert (model / "configs" / "gpu.pbtxt").is_file(), model.name


def test_the_model_volume(compose):
    """`models` fills the volume; triton, api and worker mount it read-only, and the diarization
    parameters are read from the speaker_embedding folder inside it."""
    services = compose["services"]
    writer = [v for v in services["models"]["volumes"] if str(v).startswith("model-repository:")]
    assert writer == ["model-repository:/models"]
    for name in ("triton", "api", "worker"):
        (mount,) = [
            v for v in services[name]["volumes"] if isinstance(v, dict) and v["source"] == "model-repository"
        ]
        assert mount["read_only"] is True and mount["type"] == "volume", name
        if name != "triton":
            target = services[name]["environment"]["DIARIZATION_PARAMS_DIR"]
            assert target == f"{mount['target']}/speaker_embedding/1", name
    # the same folder a checkout reads by default (where `make models` installs the parameters)
    from api.core.config import Settings

    default = Settings(_env_file=None, diarization_params_dir="").resolved_diarization_params_dir
    assert default == ROOT / "model_repository" / "speaker_embedding" / "1"


# -- what each container is told --------------------------------------------------------------------


def ours(svc: dict) -> bool:
    build = svc.get("build", {})
    image = svc.get("image", "")
    return build.get("dockerfile") in OUR_DOCKERFILES or image.startswith(
        ("${INTRASCRIBE_IMAGE", "${TRITON_IMAGE", "${INTRASCRIBE_EXPORT_IMAGE")
    )


def unread_environment(stack: dict) -> list[str]:
    """Variables our containers receive that no setting reads and the compose-only section lacks."""
    _, compose_section = sections()
    readable = settings_env_names() | SERVER_ONLY | set(compose_section)
    return [
        f"{name}: {var}"
        for name, svc in stack["services"].items()
        if ours(svc)
        for var in (svc.get("environment") or {})
        if var not in readable
    ]


def test_every_variable_a_service_receives_is_read(stack):
    assert {n for n, s in stack["services"].items() if ours(s)} == {
        "models",
        "triton",
        "migrate",
        "api",
        "worker",
        "agent",
    }
    assert not unread_environment(stack)
    broken = copy.deepcopy(stack)
    broken["services"]["worker"]["environment"]["WORKER_THREADS"] = "4"  # a typo of WORKER_CONCURRENCY
    assert unread_environment(broken) == ["worker: WORKER_THREADS"]


def test_addresses_inside_the_stack(stack):
    services = stack["services"]
    grpc = f"triton:{TRITON_GRPC_PORT}"
    for name in ("api", "worker", "agent", "migrate"):
        if name != "migrate":
            assert services[name]["environment"]["TRITON_GRPC_URL"] == grpc, name
    for name in ("api", "worker", "migrate"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DATABASE_URL"].startswith("${DATABASE_URL:-postgresql+psycopg://intrascribe:")
        assert "@postgres:5432/intrascribe" in env["DATABASE_URL"]


def test_agent_gets_no_database_or_redis(stack):
    """The agent reaches data only through the api (docs/architecture.md)."""
    agent = stack["services"]["agent"]
    assert "env_file" not in agent
    assert not {"DATABASE_URL", "REDIS_URL", "POSTGRES_PASSWORD"} & set(agent["environment"])
    assert not {"postgres", "redis"} & set(depends(agent))


def test_every_image_of_ours_can_be_rebuilt(compose):
    """`make update-SERVICE` (up --build) rebuilds a service only if it has a build section."""
    for name, svc in compose["services"].items():
        if svc["image"].startswith("${"):
            assert (
                svc["build"]["dockerfile"] in OUR_DOCKERFILES
                and (ROOT / svc["build"]["dockerfile"]).is_file()
            ), name


def test_exact_image_tags(stack):
    for name, svc in stack["services"].items():
        image = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", svc["image"])  # the default of ${VAR:-default}
        repo, _, tag = image.rpartition(":")
        assert repo and re.fullmatch(r"v?\d+(\.\d+)+[\w.-]*", tag), f"{name}: {svc['image']}: pin a version"


# -- monitoring -------------------------------------------------------------------------------------


def container_port(service: dict) -> set[int]:
    ports = {int(p) for p in service.get("expose", [])}
    for p in service.get("ports", []):
        ports.add(int(str(p).split(":")[-1].split("/")[0]))
    return ports


def test_prometheus_scrapes_services_that_exist(compose):
    services = compose["services"]
    prometheus = services["prometheus"]
    (mount,) = [v for v in prometheus["volumes"] if v.startswith("./deploy/prometheus/")]
    config = yaml.safe_load((ROOT / mount.split(":")[0]).read_text())
    assert f"--config.file={mount.split(':')[1]}" in prometheus["command"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"triton", "api", "worker"} <= set(jobs)
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                assert int(port) in container_port(services[host]) | {8000}, target
        for sd in job.get("dns_sd_configs", []):
            for host in sd["names"]:
                assert sd["port"] in container_port(services[host]), (host, sd["port"])
    assert f"triton:{TRITON_METRICS_PORT}" in jobs["triton"]["static_configs"][0]["targets"]
    assert (
        str(jobs["worker"]["dns_sd_configs"][0]["port"])
        == services["worker"]["environment"]["WORKER_METRICS_PORT"]
    )
    token_file = jobs["api"]["authorization"]["credentials_file"]
    assert token_file == "/run/secrets/" + prometheus["secrets"][0]["target"]
    assert compose["secrets"][prometheus["secrets"][0]["source"]] == {"environment": "OPERATOR_TOKEN"}


def test_grafana_is_provisioned_with_the_prometheus_datasource(compose):
    services = compose["services"]
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    url = urlparse(datasource["url"])
    assert datasource["type"] == "prometheus" and datasource["uid"] == "prometheus"
    assert url.hostname == "prometheus" and url.port in container_port(services["prometheus"])
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "intrascribe.yaml").read_text())["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert "GF_SECURITY_ADMIN_PASSWORD" in grafana["environment"]


def test_dev_livekit_is_configured_for_the_api(dev, tmp_path):
    """The dev LiveKit's configuration parses, holds the api's key pair, publishes the ports it
    listens on, and sends room_finished webhooks to a route the api has."""
    from api.core.config import Settings
    from api.main import create_app

    services = dev["services"]
    env = {"LIVEKIT_API_KEY": "APIkey", "LIVEKIT_API_SECRET": "s" * 40}

    def expand(text: str) -> str:  # ${VAR:-default} / ${VAR:?message} with the values above
        return re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: env[m.group(1)], text)

    config = yaml.safe_load(expand(services["livekit"]["environment"]["LIVEKIT_CONFIG"]))
    assert config["keys"] == {"APIkey": "s" * 40} and config["webhook"]["api_key"] == "APIkey"
    published = {str(p).split(":")[-1] for p in services["livekit"]["ports"]}
    assert {
        str(config["port"]),
        str(config["rtc"]["tcp_port"]),
        f"{config['rtc']['udp_port']}/udp",
    } == published
    for name in ("api", "agent"):
        assert expand(services[name]["environment"]["LIVEKIT_API_KEY"]) == "APIkey", name
    assert services["api"]["environment"]["LIVEKIT_API_URL"] == f"http://livekit:{config['port']}"
    assert services["agent"]["environment"]["LIVEKIT_URL"] == f"ws://livekit:{config['port']}"
    (url,) = config["webhook"]["urls"]
    assert urlparse(url).hostname == "api" and urlparse(url).port == 8000
    app = create_app(Settings(_env_file=None, data_dir=tmp_path))
    assert "post" in app.openapi()["paths"][urlparse(url).path]


def test_agent_gets_time_to_flush_on_stop(compose):
    """docker stop waits stop_grace_period before SIGKILL: at least the agent's own shutdown timeout
    (open utterances become finals, last recording chunks uploaded)."""
    from agent.worker import SHUTDOWN_TIMEOUT_S

    grace = compose["services"]["agent"]["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) >= SHUTDOWN_TIMEOUT_S, grace
