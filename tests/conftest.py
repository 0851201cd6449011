"""Test set-up. Without a GPU the Triton kernels run under the interpreter on CPU tensors,
which needs TRITON_INTERPRET=1 before triton is first imported: set it here, first.
AEDFAST_TEST_GPU=1 (the GPU check, bench/gpu_check.py) runs the same tests with the kernels
compiled for real.

Where a test runs is decided here, so it is never a silent surprise:

- A test that takes the `device` fixture runs its Triton kernels on that device: the CPU
  under the interpreter, or CUDA with AEDFAST_TEST_GPU=1. It gets the `gpu` marker, so
  `pytest -m gpu tests/` on a GPU machine selects it.
- A test marked `@pytest.mark.gpu` that does not take `device` is CUDA-only (preset sizes,
  CUDA graphs): it is skipped, with the reason, unless CUDA is there and the kernels are
  compiled (not interpreted).
- Every other test runs on the CPU whatever the machine.

On a GPU (AEDFAST_TEST_GPU=1) the CUDA-only tests run first: a device run cut at its time
limit then loses the small-shape kernel tests, which the CPU suite also runs interpreted.

AEDFAST_TEST_REHEARSE=1 (the GPU check's CPU rehearsal) keeps the first case of each
parametrised `gpu` test and deselects the rest and the `slow` ones: every other such test
function still runs once (the whole set runs in the CPU suite).
"""

import os

if os.environ.get("AEDFAST_TEST_GPU", "0") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# the detector tests' shared fixtures (model, video, CPU-pinned Detectors), defined there
from tests.detector_fixtures import compiled, eager, eager_result, model, video  # noqa: E402, F401


def cuda_kernels_ready() -> bool:
    """CUDA is there and the Triton kernels are compiled for it (not interpreted)."""
    return torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1"


@pytest.fixture
def device() -> torch.device:
    """Where Triton kernels run in this test session: CUDA when testing on a GPU, else CPU."""
    if os.environ.get("AEDFAST_TEST_GPU", "0") == "1":
        return torch.device("cuda")
    return torch.device("cpu")


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers added here
def pytest_collection_modifyitems(config, items):
    skip_cuda = None if cuda_kernels_ready() else pytest.mark.skip(
        reason="CUDA-only: needs a CUDA device with the Triton kernels compiled "
               "(AEDFAST_TEST_GPU=1 on a GPU machine)")
    cuda_only = set()
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.gpu)
        elif item.get_closest_marker("gpu") is not None:
            cuda_only.add(item.nodeid)
            if skip_cuda is not None:
                item.add_marker(skip_cuda)
    if skip_cuda is None:
        items.sort(key=lambda it: it.nodeid not in cuda_only)  # stable: CUDA-only first
    if os.environ.get("AEDFAST_TEST_REHEARSE", "0") == "1":
        seen, keep, drop = set(), [], []
        for item in items:
            key = (str(item.path), getattr(item, "originalname", item.name))
            if item.get_closest_marker("gpu") is not None and (
                    key in seen or item.get_closest_marker("slow") is not None):
                drop.append(item)
            else:
                seen.add(key)
                keep.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
