"""The oracle page's tools: ``oracle.answer_lines`` (an implementation's answers in the form
``tmemref serve`` prints), ``oracle.LineTmem`` (a program speaking the line protocol, judged
like a Python tmem) and the page's build-exercise solution, ``capped_dict_tmem``.

The reference for the answer lines is ``tmemref.cli`` itself (the server's own answers); the
programs behind ``LineTmem`` are ``python -m tmemref serve`` and small scripts that misbehave
on purpose.
"""
from __future__ import annotations

import io
import json
import sys

import pytest

from tmemref import Host, TmemOp, abi, cli, oracle
from tmemref.errors import InvariantError
from tmemref.sim.solutions import capped_dict_tmem

SERVE = [sys.executable, "-m", "tmemref", "serve"]
PAGE = abi.PAGE_SIZE


def served(lines):
    """What the real server answers to ``lines``, one parsed object per line."""
    out = io.StringIO()
    cli.replay(lines, out)
    return [json.loads(x) for x in out.getvalue().splitlines()]


# --- answer_lines --------------------------------------------------------------------------------

def test_the_references_answers_are_what_serve_prints():
    pages = 0
    for seed in range(3):
        trace = oracle.random_trace(120, seed)
        ours = [json.loads(x) for x in oracle.answer_lines(oracle.oracle_host, trace)]
        assert ours == served(oracle.trace_lines(trace))
        pages += sum("page" in a for a in ours)
    assert pages > 0                                  # gets that returned a page were compared


def test_replay_check_finds_the_buggy_answers_at_the_right_line():
    seed, trace, diff = oracle.first_difference_in(oracle.oracle_host, oracle.BuggyDictTmem,
                                                   range(20), 200)
    lines = list(oracle.trace_lines(trace))
    out = io.StringIO()
    assert cli.check(lines, out, oracle.answer_lines(oracle.BuggyDictTmem, trace)) == 1
    header = 1 + len(oracle.TRACE_DOMAINS)
    assert out.getvalue().startswith(f"line {header + diff.step + 1}: ")
    good = io.StringIO()
    assert cli.check(lines, good, oracle.answer_lines(oracle.DictTmem, trace)) == 0
    assert good.getvalue().startswith(f"{len(lines)} recorded answers checked: all agree")


def test_an_implementation_that_raises_answers_an_error():
    class Crashes(oracle.DictTmem):
        def do_tmem_op(self, domid, op):
            raise KeyError("boom")
    lines = list(oracle.answer_lines(Crashes, [(1, TmemOp(cmd=abi.TMEM_FLUSH_PAGE))]))
    assert json.loads(lines[-1]) == {"error": "raises KeyError"}


# --- LineTmem ------------------------------------------------------------------------------------

def test_a_serve_process_is_judged_like_the_reference():
    def factory():
        return oracle.LineTmem(SERVE)
    for seed in range(2):
        trace = oracle.random_trace(150, seed)
        assert oracle.compare(oracle.oracle_host, factory, trace) is None
    assert oracle.broken_promise(factory, trace) is None
    assert isinstance(factory(), oracle.Tmem)


def test_line_tmem_copies_pages_and_list_text_and_reports_errors():
    with oracle.LineTmem(SERVE, pages=2048, host={"compress": True}) as t:
        t.create_domain(1, pages=32, max_pages=64)
        t.create_domain(5, privileged=True)
        pool = t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
        assert pool == 0
        page = oracle.page_of(42)
        assert t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, oid=(3, 0, 0), page=page)) == 1
        frame = bytearray(PAGE)
        assert t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, oid=(3, 0, 0), page=frame)) == 1
        assert bytes(frame) == page
        buf = bytearray(8192)
        rc = t.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, arg1=len(buf),
                                    cli_id=abi.TMEM_CLI_ID_NULL, buf=buf))
        assert rc == 0 and bytes(buf).startswith(b"G=") and b"\0" in buf
        with pytest.raises(ValueError, match="no domain 9"):
            t.do_tmem_op(9, TmemOp(cmd=abi.TMEM_FLUSH_PAGE))
        t.check()                                    # an error answer is still an answer
    assert t.close() == 0


@pytest.mark.parametrize("script, why", [
    ("import time\ntime.sleep(30)", "no answer within"),
    ("import sys\nsys.exit(3)", "exited"),
    ("import sys\nfor l in sys.stdin: print('[1]', flush=True)", "not an answer object"),
])
def test_a_misbehaving_program_is_reported(script, why):
    with pytest.raises(RuntimeError, match=why):
        oracle.LineTmem([sys.executable, "-c", script], timeout=1.0)


def test_line_tmem_invariants_catch_a_dead_process_and_a_lost_answer():
    t = oracle.LineTmem(SERVE)
    t.check()
    t.sent += 1
    with pytest.raises(InvariantError, match="invariant 2"):
        t.check()
    t.sent -= 1
    t._proc.kill()
    t._proc.wait()
    with pytest.raises(InvariantError, match="invariant 1"):
        t.check()
    with pytest.raises(RuntimeError):
        t.create_domain(1)
    t.close()
    with pytest.raises(TypeError):
        oracle.LineTmem("tmemref serve")


# --- the build exercise: a tmem that evicts ------------------------------------------------------

def test_capped_dict_tmem_keeps_every_promise_but_differs_from_the_reference():
    capped = capped_dict_tmem(3)
    differs = 0
    for seed in range(12):
        trace = oracle.random_trace(200, seed)
        assert oracle.broken_promise(capped, trace) is None          # check() after each step
        differs += oracle.compare(oracle.oracle_host, capped, trace) is not None
    assert differs >= 6


def test_capped_dict_tmem_evicts_oldest_ephemeral_first_and_never_persistent():
    t = capped_dict_tmem(2)()
    t.create_domain(1)
    eph = t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    per = t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(persist=True)))
    for i in range(5):
        assert t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=per, index=i,
                                      page=oracle.page_of(100 + i))) == 1
    for i in range(3):                               # the third put evicts index 0
        assert t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=eph, index=i,
                                      page=oracle.page_of(i))) == 1
        t.check()
    got = [t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=eph, index=i,
                                  page=bytearray(PAGE))) for i in range(3)]
    assert got == [0, 1, 1]
    assert all(t.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=per, index=i,
                                      page=bytearray(PAGE))) == 1 for i in range(5))
    t.domains[1][eph].pages[(0, 0, 0), 9] = oracle.page_of(9)
    t.domains[1][eph].pages[(0, 0, 0), 8] = oracle.page_of(8)
    t.domains[1][eph].pages[(0, 0, 0), 7] = oracle.page_of(7)
    with pytest.raises(InvariantError, match="invariant 3"):
        t.check()


@pytest.mark.parametrize("capacity", [0, -1, "3", 2.0])
def test_capped_dict_tmem_needs_a_positive_capacity(capacity):
    with pytest.raises(ValueError):
        capped_dict_tmem(capacity)


def test_the_reference_host_is_not_the_capped_one():
    """Sanity of the exercise's claim: the reference keeps pages the capped toy drops."""
    trace = [(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))] + [
        (1, TmemOp(cmd=abi.TMEM_PUT_PAGE, index=i, page=oracle.page_of(i))) for i in range(3)
    ] + [(1, TmemOp(cmd=abi.TMEM_GET_PAGE, index=0))]
    d = oracle.compare(oracle.oracle_host, capped_dict_tmem(2), trace)
    assert d is not None and d.step == 4 and d.a.rc == 1 and d.b.rc == 0
    assert isinstance(Host(pages=1024), oracle.Tmem)
