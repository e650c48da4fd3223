"""Every model in model_repository/ is well formed, and its CPU and GPU configs agree.

Per model folder: ``config.pbtxt`` (CPU, what the local launcher loads), ``configs/gpu.pbtxt`` (picked
with ``--model-config-name=gpu`` in the Triton container) and ``1/model.py``. Both configs must parse
as ``ModelConfig``, use the Python backend, differ only where CPU and GPU must differ (instance kinds,
counts, parameters), carry no absolute paths, let ragged inputs batch, and name exactly the tensors
that ``speechlib/interfaces.py`` defines for the model. The checker runs on synthetic models too, so
each check is shown to fail on a config that breaks it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from speechlib import interfaces

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = REPO_ROOT / "model_repository"
KIND_CPU = mc.ModelInstanceGroup.KIND_CPU
KIND_GPU = mc.ModelInstanceGroup.KIND_GPU
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"|\'((?:[^\'\\\n]|\\.)*)\'')


def interface_tensors(module=interfaces) -> dict[str, set[str]]:
    """Model name -> the tensor names its interface class declares (UPPERCASE str attributes but NAME)."""
    out: dict[str, set[str]] = {}
    for obj in vars(module).values():
        if isinstance(obj, type) and isinstance(getattr(obj, "NAME", None), str):
            out[obj.NAME] = {
                v for k, v in vars(obj).items() if k.isupper() and k != "NAME" and isinstance(v, str)
            }
    return out


def parse_config(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())


def absolute_paths(text: str) -> list[str]:
    return [a or b for a, b in _QUOTED.findall(text) if (a or b).startswith("/")]


def _inputs(cfg: mc.ModelConfig) -> list[tuple]:
    return sorted((t.name, t.data_type, tuple(t.dims), t.optional, t.allow_ragged_batch) for t in cfg.input)


def _outputs(cfg: mc.ModelConfig) -> list[tuple]:
    return sorted((t.name, t.data_type, tuple(t.dims)) for t in cfg.output)


def _controls(cfg: mc.ModelConfig) -> list[str]:
    if not cfg.HasField("sequence_batching"):
        return []
    return sorted(
        text_format.MessageToString(c, as_one_line=True) for c in cfg.sequence_batching.control_input
    )


def tensor_names(cfg: mc.ModelConfig) -> set[str]:
    names = {t.name for t in cfg.input} | {t.name for t in cfg.output}
    if cfg.HasField("sequence_batching"):
        names |= {c.name for c in cfg.sequence_batching.control_input}
    return names


def _single_config_problems(cfg: mc.ModelConfig, text: str, label: str, folder: str, kind: int) -> list[str]:
    p = []
    if cfg.name != folder:
        p.append(f"{label}: name {cfg.name!r} is not the folder name {folder!r}")
    if cfg.backend != "python":
        p.append(f"{label}: backend {cfg.backend!r}, expected 'python'")
    kind_name = mc.ModelInstanceGroup.Kind.Name(kind)
    if not cfg.instance_group:
        p.append(f"{label}: no instance_group (Triton would pick the kind itself); expected {kind_name}")
    for g in cfg.instance_group:
        if g.kind != kind:
            p.append(
                f"{label}: instance_group kind {mc.ModelInstanceGroup.Kind.Name(g.kind)}, expected {kind_name}"
            )
    for path in absolute_paths(text):
        p.append(f"{label}: absolute path {path!r} (committed configs must be relocatable)")
    if cfg.HasField("dynamic_batching"):
        if cfg.max_batch_size <= 0:
            p.append(f"{label}: dynamic_batching needs max_batch_size > 0")
        for t in cfg.input:
            if -1 in t.dims and not t.allow_ragged_batch:
                p.append(
                    f"{label}: input {t.name} has variable dims {list(t.dims)} but no allow_ragged_batch: "
                    "true, so requests would never batch"
                )
    return p


def model_problems(model_dir: Path, tensors_by_model: Mapping[str, set[str]] | None = None) -> list[str]:
    """Everything wrong with one model folder (empty list: fine)."""
    if tensors_by_model is None:
        tensors_by_model = interface_tensors()
    folder = model_dir.name
    cpu_path, gpu_path = model_dir / "config.pbtxt", model_dir / "configs" / "gpu.pbtxt"
    problems = [
        f"{folder}: missing {p.relative_to(model_dir)}"
        for p in (cpu_path, gpu_path, model_dir / "1" / "model.py")
        if not p.is_file()
    ]
    configs = {}
    for label, path, kind in (
        ("config.pbtxt", cpu_path, KIND_CPU),
        ("configs/gpu.pbtxt", gpu_path, KIND_GPU),
    ):
        if not path.is_file():
            continue
        label = f"{folder}/{label}"
        try:
            cfg = parse_config(path)
        except text_format.ParseError as e:
            problems.append(f"{label}: does not parse as ModelConfig: {e}")
            continue
        configs[label] = cfg
        problems += _single_config_problems(cfg, path.read_text(encoding="utf-8"), label, folder, kind)
    if len(configs) == 2:
        cpu, gpu = configs.values()
        checks = (
            ("inputs", _inputs),
            ("outputs", _outputs),
            ("max_batch_size", lambda c: c.max_batch_size),
            ("dynamic_batching present", lambda c: c.HasField("dynamic_batching")),
            ("sequence_batching present", lambda c: c.HasField("sequence_batching")),
            ("sequence control tensors", _controls),
        )
        for what, get in checks:
            if get(cpu) != get(gpu):
                problems.append(
                    f"{folder}: {what} differ between config.pbtxt and configs/gpu.pbtxt: "
                    f"{get(cpu)} vs {get(gpu)}"
                )
    if configs:
        cfg = next(iter(configs.values()))
        if folder not in tensors_by_model:
            problems.append(f"{folder}: no class in speechlib/interfaces.py has NAME = {folder!r}")
        else:
            declared, configured = tensors_by_model[folder], tensor_names(cfg)
            if declared - configured:
                problems.append(
                    f"{folder}: declared in interfaces.py but not in the config: {sorted(declared - configured)}"
                )
            if configured - declared:
                problems.append(
                    f"{folder}: in the config but not declared in interfaces.py: {sorted(configured - declared)}"
                )
    return problems


def non_models(repository: Path) -> list[str]:
    """Folders Triton would try (and fail) to load as models: any directory without config.pbtxt."""
    return sorted(p.name for p in repository.iterdir() if p.is_dir() and not (p / "config.pbtxt").is_file())


def model_dirs(repository: Path = MODEL_REPOSITORY) -> list[Path]:
    return sorted(p for p in repository.iterdir() if p.is_dir()) if repository.is_dir() else []


# ---------------------------------------------------------------------------------------------------
# The repository


def test_repository_has_models():
    assert model_dirs(), f"no model folders in {MODEL_REPOSITORY}"


def test_every_folder_in_the_repository_is_a_model():
    bad = non_models(MODEL_REPOSITORY)
    assert not bad, f"model_repository/ holds folders that are not models (Triton exits on them): {bad}"


@pytest.mark.parametrize("model_dir", model_dirs(), ids=lambda p: p.name)
def test_model_config(model_dir: Path):
    problems = model_problems(model_dir)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------
# The checker itself, on synthetic models

GOOD_CPU = """
name: "toy"
backend: "python"
max_batch_size: 8
input [
  { name: "WAVEFORM" data_type: TYPE_FP32 dims: [ -1 ] allow_ragged_batch: true },
  { name: "OPT" data_type: TYPE_INT32 dims: [ 1 ] optional: true }
]
output [ { name: "SEGMENTS" data_type: TYPE_INT32 dims: [ -1, 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { count: 2 kind: KIND_CPU } ]
parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "$$TRITON_MODEL_DIRECTORY/env" } }
"""

GOOD_STREAM = """
name: "toy_stream"
backend: "python"
max_batch_size: 4
input [ { name: "CHUNK" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "EVENTS" data_type: TYPE_INT32 dims: [ -1, 2 ] } ]
sequence_batching {
  max_sequence_idle_microseconds: 5000000
  control_input [
    { name: "START" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "CORRID" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
instance_group [ { count: 1 kind: KIND_CPU } ]
"""

TOY_TENSORS = {"toy": {"WAVEFORM", "OPT", "SEGMENTS"}, "toy_stream": {"CHUNK", "EVENTS", "START", "CORRID"}}


def _write_model(root: Path, name: str, cpu: str, gpu: str | None = None) -> Path:
    d = root / name
    (d / "configs").mkdir(parents=True)
    (d / "1").mkdir()
    (d / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    (d / "config.pbtxt").write_text(cpu)
    (d / "configs" / "gpu.pbtxt").write_text(gpu if gpu is not None else cpu.replace("KIND_CPU", "KIND_GPU"))
    return d


@pytest.mark.parametrize("name, cpu", [("toy", GOOD_CPU), ("toy_stream", GOOD_STREAM)])
def test_checker_accepts_a_good_model(tmp_path, name, cpu):
    assert model_problems(_write_model(tmp_path, name, cpu), TOY_TENSORS) == []


BREAKAGES = {
    "wrong name": (lambda c: c.replace('name: "toy"', 'name: "other"'), None, "not the folder name"),
    "other backend": (lambda c: c.replace('backend: "python"', 'backend: "onnxruntime"'), None, "backend"),
    "GPU kind in CPU config": (lambda c: c.replace("KIND_CPU", "KIND_GPU"), None, "expected KIND_CPU"),
    "no instance group": (
        lambda c: c.replace("instance_group [ { count: 2 kind: KIND_CPU } ]", ""),
        None,
        "no instance_group",
    ),
    "CPU kind in GPU config": (None, lambda g: g.replace("KIND_GPU", "KIND_CPU"), "expected KIND_GPU"),
    "absolute path": (
        lambda c: c.replace("$$TRITON_MODEL_DIRECTORY/env", "/opt/envs/serve"),
        None,
        "absolute path",
    ),
    "not ragged": (lambda c: c.replace(" allow_ragged_batch: true", ""), None, "allow_ragged_batch"),
    "dims differ": (None, lambda g: g.replace("dims: [ -1, 2 ]", "dims: [ -1, 3 ]"), "outputs differ"),
    "optional differs": (None, lambda g: g.replace(" optional: true", ""), "inputs differ"),
    "batch size differs": (
        None,
        lambda g: g.replace("max_batch_size: 8", "max_batch_size: 16"),
        "max_batch_size differ",
    ),
    "batching differs": (
        None,
        lambda g: g.replace("dynamic_batching { max_queue_delay_microseconds: 2000 }", ""),
        "dynamic_batching present differ",
    ),
    "undeclared tensor": (
        lambda c: c.replace('"OPT"', '"EXTRA"'),
        lambda g: g.replace('"OPT"', '"EXTRA"'),
        "not declared in interfaces.py",
    ),
    "unparsable": (lambda c: c + "\nnot_a_field: 1\n", None, "does not parse"),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=str)
def test_checker_flags_a_broken_model(tmp_path, breakage):
    break_cpu, break_gpu, expected = BREAKAGES[breakage]
    cpu = break_cpu(GOOD_CPU) if break_cpu else GOOD_CPU
    gpu = GOOD_CPU.replace("KIND_CPU", "KIND_GPU")
    gpu = break_gpu(gpu) if break_gpu else gpu
    problems = model_problems(_write_model(tmp_path, "toy", cpu, gpu), TOY_TENSORS)
    assert any(expected in p for p in problems), problems


def test_checker_flags_stream_control_mismatch_and_missing_files(tmp_path):
    gpu = GOOD_STREAM.replace("KIND_CPU", "KIND_GPU").replace("TYPE_UINT64", "TYPE_INT64")
    d = _write_model(tmp_path, "toy_stream", GOOD_STREAM, gpu)
    assert any("control tensors differ" in p for p in model_problems(d, TOY_TENSORS))
    (d / "1" / "model.py").unlink()
    (d / "configs" / "gpu.pbtxt").unlink()
    problems = model_problems(d, TOY_TENSORS)
    assert any("missing 1/model.py" in p for p in problems) and any(
        "missing configs/gpu.pbtxt" in p for p in problems
    )
    assert any("no class in speechlib/interfaces.py" in p for p in model_problems(d, {}))


def test_checker_flags_non_model_folders(tmp_path):
    _write_model(tmp_path, "toy", GOOD_CPU)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "README.md").write_text("files are ignored by Triton")
    assert non_models(tmp_path) == [".ipynb_checkpoints", "notes"]


def test_interface_tensors_reads_interfaces_py():
    tensors = interface_tensors()
    assert tensors["vad"] == {
        interfaces.VAD.WAVEFORM,
        interfaces.VAD.MAX_END_SILENCE_MS,
        interfaces.VAD.SEGMENTS,
    }
    assert {"START", "END", "READY", "CORRID"} <= tensors["vad_stream"]


def test_absolute_paths_finds_quoted_paths_only():
    text = 'a: "/abs/x" b: "rel/x" c: \'/abs/y\' d: "$$TRITON_MODEL_DIRECTORY/1"'
    assert absolute_paths(text) == ["/abs/x", "/abs/y"]
