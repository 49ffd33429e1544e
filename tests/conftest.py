"""Suite-wide guards."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _grad_mode_is_not_leaked():
    """A test (or a fixture) that switches autograd off globally breaks every later training test
    far away from the cause; fail at the culprit instead."""
    assert torch.is_grad_enabled(), "autograd was globally disabled before this test started"
    yield
    leaked = not torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    assert not leaked, "this test left autograd globally disabled; use `with torch.no_grad():`"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module, restored afterwards.

    Small CPU models on a shared 2-core machine run several times faster without OpenMP
    oversubscription; results do not depend on it, except where a parity fixture records its
    thread count (those modules set it themselves)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
