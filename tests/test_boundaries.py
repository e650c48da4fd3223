"""The import boundaries of docs/architecture.md, checked statically over the source (AST).

Every ``import`` / ``from ... import`` anywhere in a file counts (also inside functions and
``try`` blocks), and so do ``importlib.import_module("x")`` / ``__import__("x")`` with literal names.
Each rule also has a self-check: a synthetic offending source that the checker must flag.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def imported_modules(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """(line, dotted module name) for every absolute import in ``source``. Relative imports are
    reported as ``.`` + name (they stay inside their own package)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append((node.lineno, "." + (node.module or "")))
            elif node.module:
                found.append((node.lineno, node.module))
                # ``from speechlib import x`` may also import a submodule: keep the full dotted name.
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names if a.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def top_level(module: str) -> str:
    return module.split(".", 1)[0]


@dataclass(frozen=True)
class Rule:
    """Files matched by ``globs`` may not import a module whose top-level package is in ``forbidden``
    (or, when ``allowed`` is set, anything outside ``allowed`` and the standard library)."""

    name: str
    globs: tuple[str, ...]
    forbidden: frozenset[str] = frozenset()
    allowed: frozenset[str] | None = None
    exclude: tuple[str, ...] = ()  # paths (relative to the repo) the rule does not apply to

    def violates(self, module: str) -> bool:
        if module.startswith("."):
            return False
        top = top_level(module)
        if self.allowed is not None and top not in self.allowed and top not in STDLIB:
            return True
        return top in self.forbidden

    def files(self) -> list[Path]:
        out = set()
        for g in self.globs:
            out.update(p for p in REPO_ROOT.glob(g) if "__pycache__" not in p.parts)
        return sorted(p for p in out if p.relative_to(REPO_ROOT).as_posix() not in self.exclude)

    def violations(self, source: str, filename: str = "<string>") -> list[str]:
        return [
            f"{filename}:{line}: imports {mod}"
            for line, mod in imported_modules(source, filename)
            if self.violates(mod)
        ]


STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}
RUNTIME = (
    "api/**/*.py",
    "agent/**/*.py",
    "serving/**/*.py",
    "inference_client/**/*.py",
    "model_repository/*/1/model.py",
)
MODEL_CODE = ("model_repository/*/1/model.py",)
TORCH_RUNTIME = "serving/torch_runtime.py"
NEURAL_EXPORT = frozenset({"export_scripts", "torch", "torchaudio", "funasr", "pyannote"})

RULES = [
    Rule(
        "speechlib is pure numpy/scipy/sklearn/kaldi-native-fbank/yaml",
        ("speechlib/**/*.py",),
        allowed=frozenset({"numpy", "scipy", "sklearn", "kaldi_native_fbank", "yaml", "speechlib"}),
    ),
    Rule(
        "runtime code never imports export code, torch, funasr or pyannote",
        RUNTIME,
        forbidden=NEURAL_EXPORT,
        # The TorchScript runtime of the GPU image (the one place torch runs a network, inside Triton).
        exclude=(TORCH_RUNTIME,),
    ),
    Rule(
        "api and agent run no neural network",
        ("api/**/*.py", "agent/**/*.py"),
        forbidden=frozenset({"onnxruntime", "torch", "torchaudio"}),
    ),
    Rule(
        "agent talks to Triton and the api only: no Redis, no database, no api import",
        ("agent/**/*.py",),
        forbidden=frozenset({"redis", "sqlalchemy", "api", "psycopg", "psycopg2", "asyncpg", "alembic"}),
    ),
    Rule("Triton models import neither api nor agent", MODEL_CODE, forbidden=frozenset({"api", "agent"})),
    Rule(
        "the TorchScript runtime imports torch and nothing from export code",
        (TORCH_RUNTIME,),
        forbidden=NEURAL_EXPORT - {"torch"},
    ),
]

# One offending and one clean source per rule: the checker must flag the first and pass the second.
SELF_CHECKS = {
    RULES[0].name: (
        "import numpy as np\nfrom tritonclient.grpc import InferInput\n",
        "from __future__ import annotations\nimport math, dataclasses\nimport numpy as np\n"
        "import kaldi_native_fbank as knf\nfrom scipy import signal\nfrom speechlib.vad import x\n",
    ),
    RULES[1].name: (
        "def load():\n    import torch\n    return torch\n",
        "import numpy as np\nimport onnxruntime\nfrom speechlib import vad\n",
    ),
    RULES[2].name: (
        "try:\n    import onnxruntime as ort\nexcept ImportError:\n    ort = None\n",
        "import fastapi\nimport sqlalchemy\nfrom inference_client import x\n",
    ),
    RULES[3].name: ("from sqlalchemy.orm import Session\n", "import httpx\nimport tritonclient.grpc.aio\n"),
    RULES[4].name: (
        "import importlib\nroutes = importlib.import_module('api.routes')\n",
        "import triton_python_backend_utils as pb_utils\nimport numpy as np\n",
    ),
    RULES[5].name: ("from funasr import AutoModel\n", "import numpy as np\nimport torch\n"),
}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_import_boundary(rule: Rule):
    files = rule.files()
    problems = []
    for path in files:
        problems += rule.violations(path.read_text(encoding="utf-8"), str(path.relative_to(REPO_ROOT)))
    assert not problems, f"{rule.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_checker_flags_offending_source(rule: Rule):
    bad, good = SELF_CHECKS[rule.name]
    assert rule.violations(bad), f"the checker missed an offending import for: {rule.name}"
    assert rule.violations(good) == []


def test_rules_see_the_code_they_guard():
    # A glob that matches nothing would make its rule pass vacuously.
    assert RULES[0].files(), "no speechlib/*.py found"
    assert any(p.name == "model.py" for p in RULES[4].files()), "no model_repository/*/1/model.py found"
    assert {p.parts[len(REPO_ROOT.parts)] for p in RULES[1].files()} >= {
        "api",
        "agent",
        "serving",
        "inference_client",
    }


def test_imported_modules_sees_every_form():
    src = (
        "import a.b as c, d\nfrom e.f import g\nfrom . import h\n"
        "def f():\n    import i\n    __import__('j')\n    return importlib.import_module('k.l')\n"
    )
    mods = {m for _, m in imported_modules(src)}
    assert {"a.b", "d", "e.f", "e.f.g", ".", "i", "j", "k.l"} <= mods


# ---------------------------------------------------------------------------------------------------
# Code that runs inside NVIDIA's Triton container must work on its Python 3.10.

PY310_CODE = ("model_repository/*/1/model.py", "speechlib/**/*.py")
# Standard-library names that appeared after 3.10, by module.
NEWER_THAN_310 = {
    "tomllib": None,
    "typing": {
        "Self",
        "LiteralString",
        "Never",
        "assert_never",
        "assert_type",
        "reveal_type",
        "TypeVarTuple",
        "Unpack",
        "Required",
        "NotRequired",
        "dataclass_transform",
        "override",
        "TypeAliasType",
    },
    "enum": {"StrEnum", "ReprEnum", "verify", "EnumCheck", "FlagBoundary"},
    "datetime": {"UTC"},
    "itertools": {"batched"},
    "asyncio": {"TaskGroup", "timeout", "Runner"},
}


def py310_problems(source: str, filename: str = "<string>") -> list[str]:
    try:
        tree = ast.parse(source, filename, feature_version=(3, 10))
    except SyntaxError as e:
        return [f"{filename}:{e.lineno}: not Python 3.10 syntax: {e.msg}"]
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            problems += [
                f"{filename}:{node.lineno}: {a.name} is newer than Python 3.10"
                for a in node.names
                if a.name in NEWER_THAN_310 and NEWER_THAN_310[a.name] is None
            ]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module in NEWER_THAN_310:
            names = NEWER_THAN_310[node.module]
            problems += [
                f"{filename}:{node.lineno}: {node.module}.{a.name} is newer than Python 3.10"
                for a in node.names
                if names is None or a.name in names
            ]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = NEWER_THAN_310.get(node.value.id)
            if names and node.attr in names:
                problems.append(
                    f"{filename}:{node.lineno}: {node.value.id}.{node.attr} is newer than Python 3.10"
                )
    return problems


def _repo_module_file(module: str) -> list[Path]:
    """The repository files that importing ``module`` runs (package ``__init__`` files included)."""
    parts = module.split(".")
    files = []
    for i in range(1, len(parts) + 1):
        base = REPO_ROOT.joinpath(*parts[:i])
        for cand in (base / "__init__.py", base.with_suffix(".py")):
            if cand.is_file():
                files.append(cand)
    return files


def _py310_files() -> list[Path]:
    """model.py files, speechlib, and every repository module model.py files import, transitively."""
    todo = [p for g in PY310_CODE for p in REPO_ROOT.glob(g) if "__pycache__" not in p.parts]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            mods = imported_modules(path.read_text(encoding="utf-8"), str(path))
        except SyntaxError:
            continue  # reported by py310_problems
        for _, mod in mods:
            if not mod.startswith("."):
                todo += _repo_module_file(mod)
    return sorted(seen)


def test_container_code_is_python_310_compatible():
    files = _py310_files()
    assert any(p.name == "model.py" for p in files), "no model_repository/*/1/model.py found"
    assert REPO_ROOT / "speechlib" / "interfaces.py" in files
    problems = []
    for path in files:
        problems += py310_problems(path.read_text(encoding="utf-8"), str(path.relative_to(REPO_ROOT)))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "bad",
    [
        "try:\n    pass\nexcept* ValueError:\n    pass\n",
        "def f[T](x: T) -> T:\n    return x\n",
        "import tomllib\n",
        "from typing import Self\n",
        "import enum\nclass C(enum.StrEnum):\n    A = 'a'\n",
        "from datetime import UTC\n",
    ],
)
def test_py310_checker_flags_newer_code(bad):
    assert py310_problems(bad)


def test_py310_checker_accepts_310_code():
    ok = "from __future__ import annotations\nimport typing\nmatch 1:\n    case 1:\n        pass\nx: int | None = None\n"
    assert py310_problems(ok) == []


def test_the_agent_pipeline_does_not_load_the_clustering_stack():
    """A live job imports agent.pipeline at start: speaker assignment (speechlib.diarization.turns,
    via the transcript record) must not pull in scipy / scikit-learn (~80 MiB per job process)."""
    import subprocess

    code = "import sys, agent.pipeline; print(sorted(m for m in ('scipy', 'sklearn') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_api_checks_options_without_the_clustering_stack():
    """The batch route validates speaker counts (api.schemas.BatchOptions) in the api process: that
    must not load scipy / scikit-learn there (+80 MiB of the api's 300 MB, measured through the
    api: docs/benchmarks.md)."""
    import subprocess

    code = (
        "import sys, api.main; from api.schemas import BatchOptions; "
        "BatchOptions(num_speakers=2, min_speakers=1, max_speakers=3); "
        "print(sorted(m for m in ('scipy', 'sklearn', 'av') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
