"""Shared test fixtures; the authors' reference fixtures come through `tests.helpers.reference` only."""

import os
from pathlib import Path

# precision=auto must mean the same on every CI machine: the CPU's bf16 detection is pinned to "no"
# (fp32) here and in every process the tests start; tests of the detection itself mock both ways.
os.environ["IBOT_NATIVE_BF16"] = "0"

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers.reference import load_reference, reference_dir  # noqa: E402


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    """The fixture folder (`$IBOT_REFERENCE_DIR` or ../shared/fixtures/reference); prefer the helper's
    `reference_path(name)` / `load_reference(name)` in new tests."""
    return reference_dir()


@pytest.fixture(scope="session")
def ref_outputs():
    # Tests only: the fixtures are trusted files; production code never unpickles like this.
    return load_reference("reference_outputs_A.pt")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def one_thread():
    """One intra-op thread for modules of tiny models: on 2 shared cores a second thread only spins."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
