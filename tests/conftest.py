"""Shared test fixtures: paths to the authors' reference outputs (../shared beside the checkout)."""

import os
from pathlib import Path

# precision=auto must mean the same on every CI machine: the CPU's bf16 detection is pinned to "no"
# (fp32) here and in every process the tests start; tests of the detection itself mock both ways.
os.environ["IBOT_NATIVE_BF16"] = "0"

import pytest  # noqa: E402
import torch  # noqa: E402

REF = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "reference"


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    if not REF.is_dir():
        raise FileNotFoundError(f"reference fixtures not found at {REF}: check out ../shared beside the repo")
    return REF


@pytest.fixture(scope="session")
def ref_outputs(ref_dir):
    # Tests only: the fixtures are trusted files; production code never unpickles like this.
    return torch.load(ref_dir / "reference_outputs_A.pt", weights_only=False)


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
