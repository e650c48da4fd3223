import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            version = np.array([np.__version__.encode()], dtype=np.object_)
            out.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("NUMPY_VERSION", version), pb_utils.Tensor("Y", x * 2.0)]
                )
            )
        return out
