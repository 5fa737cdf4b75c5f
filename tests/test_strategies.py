"""tmemref.strategies: Hypothesis strategies driving the engine, and the pytest plugin.

Every hypercall a strategy draws goes through ``Host.do_tmem_op`` with ``host.check()`` after it.
The plugin is exercised the way a user meets it: a test file in a fresh directory, run by
pytest with the plugin loaded (``pytester``).
"""
from __future__ import annotations

import errno
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tmemref import Host, abi, oracle, strategies
from tmemref.oracle import DictTmem

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


class CheckedHost(Host):
    """A Host that checks every invariant after every hypercall."""

    def do_tmem_op(self, domid, op):
        rc = super().do_tmem_op(domid, op)
        self.check()
        return rc


@FAST
@given(trace=strategies.traces())
def test_traces_drive_the_engine_which_keeps_the_promises_and_agrees_with_the_toy(trace):
    puts = [op.page for _, op in trace if op.cmd == abi.TMEM_PUT_PAGE]
    assert len(puts) == len(set(puts))                    # every put a distinct page
    assert all(op.explain() is None for _, op in trace if op.cmd != abi.TMEM_GET_PAGE)
    assert oracle.broken_promise(lambda: CheckedHost(pages=oracle.ORACLE_PAGES), trace) is None
    assert oracle.compare(oracle.oracle_host, DictTmem, trace) is None   # room: no eviction


@FAST
@given(step=strategies.guest_ops(domids=(3,), max_pool=0, oids=((9, 9, 9),), indexes=(5,)))
def test_guest_ops_respect_their_space(step):
    domid, op = step
    assert domid == 3
    if op.cmd != abi.TMEM_NEW_POOL:
        assert op.pool_id == 0
    if op.cmd in (abi.TMEM_PUT_PAGE, abi.TMEM_GET_PAGE, abi.TMEM_FLUSH_PAGE):
        assert (op.oid, op.index) == ((9, 9, 9), 5)
    assert op.cmd not in (abi.TMEM_CONTROL, abi.TMEM_AUTH, abi.TMEM_RESTORE_NEW)


@FAST
@given(bad=strategies.malformed_ops())
def test_malformed_ops_are_named_by_explain_and_refused_by_the_engine(bad):
    """explain() names exactly the bad field; the hypercall returns -EFAULT and changes
    nothing. (Fails while core/host.py's fast path lets an unread field equal to its default
    through, e.g. ``flags=0.0`` or ``np.int64(0)`` — reported to the engine.)"""
    field, op = bad
    why = op.explain()
    assert why is not None and why.split(":")[0].split("[")[0] == field, why
    host = Host(pages=oracle.ORACLE_PAGES)
    host.create_domain(1, pages=16)
    assert host.do_tmem_op(1, op) == -errno.EFAULT, why
    host.check()
    assert 1 not in host.clients or all(p is None for p in host.clients[1].pools)


def test_the_plugin_is_registered_and_the_command_installed():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"tmemref.strategies": "tmemref.strategies"}
    assert project["scripts"] == {"tmemref": "tmemref.cli:main"}
    assert callable(strategies.tmem_oracle)            # the fixture lives in that module


USER_TEST = '''
from hypothesis import given, settings
from tmemref.oracle import BuggyDictTmem, DictTmem
from tmemref.strategies import traces

RUN = settings(max_examples=100, deadline=None, derandomize=True, database=None)

@RUN
@given(trace=traces())
def test_dict_tmem_agrees(tmem_oracle, trace):
    tmem_oracle.assert_agrees(DictTmem, trace)

@RUN
@given(trace=traces())
def test_buggy_keeps_promises(tmem_oracle, trace):
    tmem_oracle.assert_keeps_promises(BuggyDictTmem, trace)

def test_one_oracle_per_session(tmem_oracle):
    assert repr(tmem_oracle) == "<Oracle reference=oracle_host domains=[1, 2]>"
'''


def test_a_users_test_file_with_the_fixture_and_a_strategy(pytester):
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest("-p", "tmemref.strategies", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: BuggyDictTmem broke a promise at step * GET_PAGE *returned 1 (page *"
        "a get returns the page of the last successful put (page *), never another*"])
    out = result.stdout.str()
    assert "Falsifying example" in out and out.count("TMEM_PUT_PAGE") >= 2
    assert "bytes of 4096 bytes, sha1" in out and "\\x00\\x00\\x00" not in out   # compact
