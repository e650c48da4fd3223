"""The serving environment as Triton's Python-backend stub sees it: numpy < 2 (numpy 2 makes every
output tensor arrive empty, silently), and outputs actually carry data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tritonclient.http as httpclient

from serving.launcher import TritonServer

PROBE_REPOSITORY = Path(__file__).parent / "triton_probe"


def test_models_run_with_numpy_below_2_and_outputs_are_not_empty():
    with TritonServer(PROBE_REPOSITORY) as server:
        client = httpclient.InferenceServerClient(server.ports.http_url)
        x = np.arange(1, 6, dtype=np.float32)
        inp = httpclient.InferInput("X", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer("env_probe", [inp])
        version = result.as_numpy("NUMPY_VERSION")[0].decode()
        assert int(version.split(".")[0]) < 2, f"Triton models run with numpy {version}"
        y = result.as_numpy("Y")
        assert y.size == 5 and np.array_equal(y, x * 2.0)


def test_launcher_reports_the_server_log_when_startup_fails(tmp_path):
    bad = tmp_path / "repo" / "broken"
    (bad / "1").mkdir(parents=True)
    (bad / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\ninput [ { name: "X" ')
    server = TritonServer(tmp_path / "repo")
    try:
        server.start(timeout=60)
    except RuntimeError as exc:
        assert "broken" in str(exc)
    else:
        server.stop()
        raise AssertionError("a repository with a malformed config must not start")
