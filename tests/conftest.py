"""Every test runs with the lock-order checker on: a blocking acquire against the documented
order (tmemref/host/locks.py) raises LockOrderError wherever it happens."""
import sys
import tempfile
from pathlib import Path

import pytest

from tmemref import Host

from tmemref.host import locks


def pytest_collection_finish(session):
    """When the browser tests are collected, start their book build now, in a child process:
    it runs on one core while the other tests run (test_browser.built_site waits for it)."""
    if any(item.path.name == "test_browser.py" for item in session.items):
        browser = sys.modules.get("test_browser")
        if browser is not None:
            out = Path(tempfile.mkdtemp(prefix="tmemref-book-"))
            session.config.tmemref_book_build = browser.start_book_build(out)


def pytest_unconfigure(config):
    started = getattr(config, "tmemref_book_build", None)
    if started is not None and started[0].poll() is None:
        started[0].kill()                   # the browser tests did not run (-x, interrupted)
        started[0].wait()


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
