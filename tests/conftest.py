"""Every test runs with the lock-order checker on: a blocking acquire against the documented
order (tmemref/host/locks.py) raises LockOrderError wherever it happens."""
import pytest

from tmemref import Host

from tmemref.host import locks


@pytest.fixture(autouse=True)
def _lock_order_checking():
    locks.set_order_checking(True)
    yield
    held = locks.held_locks()
    locks.set_order_checking(False)
    assert not held, f"test ended holding locks: {held}"


@pytest.fixture
def host():
    """A 1024-frame host with two guests (32 pages each, up to 512), checked. Test modules
    that need another shape define their own ``host`` fixture."""
    h = Host(pages=1024)
    h.create_domain(1, pages=32, max_pages=512)
    h.create_domain(2, pages=32, max_pages=512)
    h.check()
    return h
