"""Test set-up. Without a GPU the Triton kernels run under the interpreter on CPU tensors,
which needs TRITON_INTERPRET=1 before triton is first imported: set it here, first.
AEDFAST_TEST_GPU=1 (bench/gpu_check.sh) runs the same tests with kernels compiled for real.
"""

import os

if os.environ.get("AEDFAST_TEST_GPU", "0") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def device() -> torch.device:
    """Where Triton kernels run in this test session: CUDA when testing on a GPU, else CPU."""
    if os.environ.get("AEDFAST_TEST_GPU", "0") == "1":
        return torch.device("cuda")
    return torch.device("cpu")
