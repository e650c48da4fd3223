"""The ``torchscript`` network runtime: a traced model (``model.ts``) on torch, CUDA in the GPU image.

The only serving module that imports torch, lazily, so the onnxruntime path never needs it. The
traced graph is the same one the ONNX file is exported from (``export_scripts/sensevoice.py`` gates
both against eager PyTorch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TorchScriptModel:
    """Run a TorchScript module on numpy inputs; returns numpy outputs (float32 / int32)."""

    def __init__(self, path: str | Path, device: str = "cpu", device_id: int = 0, threads: int = 1):
        try:
            import torch
        except ImportError as exc:  # the CPU serving env of a deployment without torch
            raise RuntimeError(
                "runtime 'torchscript' needs torch in the serving environment (the GPU image has it); "
                "use runtime 'onnxruntime' otherwise"
            ) from exc
        self.torch = torch
        if device == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("runtime 'torchscript' on a GPU instance, but torch sees no CUDA device")
            self.device = torch.device(f"cuda:{device_id}")
        else:
            torch.set_num_threads(max(1, int(threads)))
            self.device = torch.device("cpu")
        if not Path(path).is_file():
            raise RuntimeError(
                f"{path} not found: export with --torchscript (make models does for dev models)"
            )
        self.module = torch.jit.load(str(path), map_location=self.device).eval()

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        torch = self.torch
        inputs = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]
        with torch.inference_mode():
            outputs = self.module(*inputs)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [o.detach().cpu().numpy() for o in outputs]
