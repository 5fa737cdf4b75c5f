"""Every test runs with the lock-order checker on: a blocking acquire against the documented
order (tmemref/host/locks.py) raises LockOrderError wherever it happens."""
import pytest

from tmemref.host import locks


@pytest.fixture(autouse=True)
def _lock_order_checking():
    locks.set_order_checking(True)
    yield
    held = locks.held_locks()
    locks.set_order_checking(False)
    assert not held, f"test ended holding locks: {held}"
