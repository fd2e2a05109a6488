"""Shared test fixtures: paths to the authors' reference outputs (../shared beside the checkout)."""

from pathlib import Path

import pytest
import torch

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
