"""tmemref.oracle: the toy tmem and the buggy one, traces, the differential checker, the promises
model, the Protocol and the Oracle a test uses.

Expected behaviour comes from the facts digest (cited by section) and tmem-internals.html, never
from the oracle's own output. Implementations' ``check()`` runs after every step (``call``, and
``compare``/``broken_promise`` with their default ``check=True``).
"""
from __future__ import annotations

import errno
import random

import pytest

from tmemref import Host, InvariantError, TmemOp, abi, oracle
from tmemref.guest.ops import describe

PAGE = abi.PAGE_SIZE
NEW, PUT, GET = abi.TMEM_NEW_POOL, abi.TMEM_PUT_PAGE, abi.TMEM_GET_PAGE
FLUSH, FLOBJ = abi.TMEM_FLUSH_PAGE, abi.TMEM_FLUSH_OBJECT


def op(cmd, **kw):
    return TmemOp(cmd=cmd, **kw)


# =================================================================================================
# The toy tmem and the buggy one
# =================================================================================================

def toy(cls=oracle.DictTmem):
    t = cls()
    t.create_domain(1)
    t.create_domain(2)
    return t


def call(t, domid, o):
    rc = t.do_tmem_op(domid, o)
    t.check()
    return rc


def test_dict_tmem_pool_creation_rules():
    t = toy()
    assert [call(t, 1, op(NEW, flags=abi.pool_flags())) for _ in range(16)] == list(range(16))
    assert call(t, 1, op(NEW, flags=abi.pool_flags())) == -errno.EPERM       # §14 rule 1
    assert call(t, 1, op(abi.TMEM_DESTROY_POOL, pool_id=3)) == 1
    assert call(t, 1, op(abi.TMEM_DESTROY_POOL, pool_id=3)) == 0             # §3.3
    assert call(t, 1, op(abi.TMEM_DESTROY_POOL, pool_id=99)) == 0
    assert call(t, 1, op(NEW, flags=abi.pool_flags())) == 3                  # lowest free
    for flags in (abi.pool_flags(version=0), abi.pool_flags(persist=True, shared=True),
                  abi.pool_flags(pagesize_field=1), abi.pool_flags() | abi.TMEM_POOL_PRECOMPRESSED,
                  abi.pool_flags() | 0x100):
        assert call(t, 2, op(NEW, flags=flags)) == -errno.EPERM              # §3.2
    assert call(t, 2, op(NEW, flags=abi.pool_flags(shared=True), uuid=(1, 2))) == 0


def test_dict_tmem_page_rules():
    t = toy()
    eph = call(t, 1, op(NEW, flags=abi.pool_flags()))
    pers = call(t, 1, op(NEW, flags=abi.pool_flags(persist=True)))
    buf = bytearray(PAGE)
    assert call(t, 1, op(GET, pool_id=eph, page=buf)) == -abi.EEMPTY         # §3.6
    assert call(t, 1, op(PUT, pool_id=eph, oid=(1, 0, 0), index=0, page=oracle.page_of(1))) == 1
    assert call(t, 1, op(GET, pool_id=eph, oid=(1, 0, 0), index=5, page=buf)) == 0
    assert call(t, 1, op(GET, pool_id=eph, oid=(1, 0, 0), index=0, page=buf)) == 1
    assert oracle.page_label(buf) == "page 1"
    assert call(t, 1, op(GET, pool_id=eph, oid=(1, 0, 0), index=0, page=buf)) == -abi.EEMPTY
    for i in range(2):                                                       # §14 rule 4
        assert call(t, 1, op(PUT, pool_id=pers, oid=(2, 0, 0), index=i,
                             page=oracle.page_of(i))) == 1
    assert [call(t, 1, op(GET, pool_id=pers, oid=(2, 0, 0), index=0, page=buf))
            for _ in range(3)] == [1, 1, 1]
    assert call(t, 1, op(PUT, pool_id=pers, oid=(2, 0, 0), index=0, page=oracle.page_of(9))) == 1
    call(t, 1, op(GET, pool_id=pers, oid=(2, 0, 0), index=0, page=buf))
    assert oracle.page_label(buf) == "page 9"                                  # §3.5 coherence
    assert call(t, 1, op(abi.TMEM_FLUSH_OBJECT, pool_id=pers, oid=(2, 0, 0))) == 1
    assert call(t, 1, op(GET, pool_id=pers, oid=(2, 0, 0), index=1, page=buf)) == -abi.EEMPTY
    assert call(t, 1, op(abi.TMEM_FLUSH_PAGE, pool_id=pers, oid=(7, 0, 0))) == 1   # §3.7
    assert call(t, 1, op(PUT, pool_id=9, page=oracle.page_of(1))) == -errno.ENODEV
    assert call(t, 1, op(abi.TMEM_XCHG, pool_id=eph)) == -errno.ENOSYS
    assert call(t, 1, op(abi.TMEM_XCHG, pool_id=9)) == -errno.ENODEV        # pool check first
    assert call(t, 1, op(abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE)) == -errno.EPERM


def test_dict_tmem_bad_frames_and_callers():
    t = toy()
    pool = call(t, 1, op(NEW, flags=abi.pool_flags(persist=True)))
    assert call(t, 1, op(PUT, pool_id=pool, page=b"short")) == -errno.EFAULT
    assert call(t, 1, op(PUT, pool_id=pool, page=oracle.page_of(1))) == 1
    assert call(t, 1, op(GET, pool_id=pool, page=bytes(PAGE))) == -errno.EFAULT   # read-only
    assert call(t, 1, op(PUT, pool_id=pool, page=b"short")) == -errno.EFAULT
    assert call(t, 1, op(GET, pool_id=pool, page=bytearray(PAGE))) == -abi.EEMPTY  # flushed
    with pytest.raises(ValueError):
        t.do_tmem_op(7, op(NEW, flags=abi.pool_flags()))
    with pytest.raises(NotImplementedError):
        t.do_tmem_op(0, op(abi.TMEM_CONTROL, subop=abi.TMEMC_LIST))
    with pytest.raises(ValueError):
        t.create_domain(1)


def test_buggy_dict_tmem_returns_the_older_of_two_puts():
    for cls, want in ((oracle.DictTmem, "page 2"), (oracle.BuggyDictTmem, "page 1")):
        t = toy(cls)
        pool = call(t, 1, op(NEW, flags=abi.pool_flags()))
        assert call(t, 1, op(PUT, pool_id=pool, page=oracle.page_of(1))) == 1
        assert call(t, 1, op(PUT, pool_id=pool, page=oracle.page_of(2))) == 1
        buf = bytearray(PAGE)
        assert call(t, 1, op(GET, pool_id=pool, page=buf)) == 1
        assert oracle.page_label(buf) == want


def test_page_of_and_page_label():
    assert oracle.page_of(3) != oracle.page_of(4) and len(oracle.page_of(2 ** 32 - 1)) == PAGE
    assert oracle.page_label(oracle.page_of(123456)) == "page 123456"
    assert oracle.page_label(b"\x01" + bytes(PAGE - 1)).startswith("sha1 ")


# =================================================================================================
# Traces and the differential checker
# =================================================================================================

def test_random_trace_is_deterministic_and_exercises_duplicates():
    a, b = oracle.random_trace(150, 4), oracle.random_trace(150, 4)
    assert [(d, describe(o), o.page) for d, o in a] == \
        [(d, describe(o), o.page) for d, o in b]
    other = oracle.random_trace(150, 5)
    assert [describe(o) for _, o in a] != [describe(o) for _, o in other]
    puts = [(d, o.pool_id, o.oid, o.index) for d, o in a if o.cmd == PUT]
    assert len(puts) > len(set(puts))                  # some handle is put twice
    assert all(o.cmd not in (abi.TMEM_CONTROL, abi.TMEM_AUTH, abi.TMEM_RESTORE_NEW)
               for _, o in a)
    pages = [o.page for _, o in a if o.cmd == PUT]
    assert len(pages) == len(set(pages))


def test_the_toy_agrees_with_the_reference_on_random_traces():
    """DictTmem models the guest ABI (§3, §14) without memory pressure: Host must agree."""
    assert oracle.compare(oracle.oracle_host, oracle.DictTmem, oracle.random_trace(120, 0)) is None
    for seed in range(1, 6):
        assert oracle.compare(oracle.oracle_host, oracle.DictTmem, oracle.random_trace(200, seed),
                              check=False) is None


CANONICAL = [(1, op(NEW, flags=abi.pool_flags())),
             (1, op(PUT, oid=(1, 0, 0), page=oracle.page_of(1))),
             (1, op(PUT, oid=(1, 0, 0), page=oracle.page_of(2))),
             (1, op(GET, oid=(1, 0, 0)))]


def test_compare_catches_the_coherence_bug():
    d = oracle.compare(oracle.oracle_host, oracle.BuggyDictTmem, CANONICAL)
    assert d is not None and d.step == 3 and d.domid == 1
    assert d.a == oracle.Outcome(1, oracle.page_of(2))
    assert d.b == oracle.Outcome(1, oracle.page_of(1))
    assert str(d) == ("step 3, dom1 GET_PAGE pool=0 oid=(1, 0, 0) index=0: Host returned 1 "
                      "(page 2), BuggyDictTmem returned 1 (page 1)")
    assert oracle.compare(oracle.oracle_host, oracle.DictTmem, CANONICAL) is None


class _FlushSaysZero(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        rc = super().do_tmem_op(domid, o)
        return 0 if o.cmd == abi.TMEM_FLUSH_PAGE else rc


class _GetCrashes(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        if o.cmd == GET:
            raise RuntimeError("boom")
        return super().do_tmem_op(domid, o)


class _Corrupt(oracle.DictTmem):
    def check(self):
        if any(p is not None and p.pages for s in self.domains.values() for p in s):
            raise InvariantError("corrupt on purpose")


def test_compare_reports_return_values_and_crashes_and_raises_on_broken_invariants():
    trace = CANONICAL[:2] + [(1, op(abi.TMEM_FLUSH_PAGE, oid=(1, 0, 0)))]
    d = oracle.compare(oracle.oracle_host, _FlushSaysZero, trace)
    assert (d.step, d.a, d.b) == (2, oracle.Outcome(1), oracle.Outcome(0))
    d = oracle.compare(oracle.DictTmem, _GetCrashes, CANONICAL)
    assert d.step == 3 and d.b == oracle.Outcome("raises RuntimeError")
    with pytest.raises(InvariantError):
        oracle.compare(oracle.DictTmem, _Corrupt, CANONICAL)
    assert oracle.compare(oracle.DictTmem, _Corrupt, CANONICAL, check=False) is None


def test_shrink_finds_the_four_step_trace():
    found = oracle.first_difference_in(oracle.oracle_host, oracle.BuggyDictTmem, range(30), 200,
                                       check=False)
    assert found is not None
    seed, trace, d = found
    short = oracle.shrink(oracle.oracle_host, oracle.BuggyDictTmem, trace)
    assert oracle.compare(oracle.oracle_host, oracle.BuggyDictTmem, short) is not None
    for i in range(len(short)):                         # 1-minimal
        assert oracle.compare(oracle.oracle_host, oracle.BuggyDictTmem, short[:i] + short[i + 1:],
                              check=False) is None
    assert [o.cmd for _, o in short] == [NEW, PUT, PUT, GET]
    handles = {(o.pool_id, o.oid, o.index) for _, o in short[1:]}
    assert len(handles) == 1                            # one handle: put, put, get
    with pytest.raises(ValueError):
        oracle.shrink(oracle.oracle_host, oracle.DictTmem, CANONICAL)


def test_relabel_renumbers_pages_and_keeps_the_difference():
    trace = [CANONICAL[0], (1, op(PUT, oid=(1, 0, 0), page=oracle.page_of(70))),
             (1, op(PUT, oid=(1, 0, 0), page=oracle.page_of(80))), CANONICAL[3],
             (1, op(PUT, oid=(1, 0, 0), page=b"bad frame"))]
    r = oracle.relabel(trace)
    assert [o.page for _, o in r[1:3]] == [oracle.page_of(1), oracle.page_of(2)]
    assert r[4][1].page == b"bad frame" and r[0][1] is trace[0][1]
    assert str(oracle.compare(oracle.oracle_host, oracle.BuggyDictTmem, r)).endswith(
        "Host returned 1 (page 2), BuggyDictTmem returned 1 (page 1)")


def test_side_by_side_marks_only_the_differing_step():
    rows = oracle.side_by_side(oracle.oracle_host, oracle.BuggyDictTmem, CANONICAL)
    assert [r[4] for r in rows] == ["", "", "", "≠"]
    assert rows[0][2] == rows[0][3] == "0" and rows[3][2] == "1 (page 2)"




def test_new_pool_refused_matches_the_hypervisor():
    """§3.2: version 1 only, no page size, no precompressed or reserved bits, not shared and
    persistent; the engine must agree for every flag word tried."""
    words = [abi.pool_flags(), abi.pool_flags(persist=True), abi.pool_flags(shared=True),
             abi.pool_flags(version=0), abi.pool_flags(version=2), abi.pool_flags(pagesize_field=3),
             abi.pool_flags() | abi.TMEM_POOL_PRECOMPRESSED, abi.pool_flags() | 0x100,
             abi.pool_flags(persist=True, shared=True), abi.pool_flags() | 8]
    for flags in words:
        host = oracle.oracle_host()
        host.create_domain(1, pages=16)
        rc = host.do_tmem_op(1, op(NEW, flags=flags))
        host.check()
        assert oracle.new_pool_refused(flags) == (rc == -errno.EPERM), hex(flags)
    assert not oracle.new_pool_refused(abi.pool_flags() | 8)     # §1.3: bit 3 unchecked


def test_dict_tmem_check_catches_each_broken_invariant():
    t = toy()
    pool = call(t, 1, op(NEW, flags=abi.pool_flags()))
    call(t, 1, op(PUT, pool_id=pool, page=oracle.page_of(1)))
    t.domains[2].append(None)                                     # invariant 1: 17 slots
    with pytest.raises(InvariantError, match="invariant 1"):
        t.check()
    t.domains[2].pop()
    t.domains[1][pool].pages[((0, 0, 0), 0)] = bytearray(PAGE)    # invariant 2: not bytes
    with pytest.raises(InvariantError, match="invariant 2"):
        t.check()


# =================================================================================================
# The Protocol
# =================================================================================================

class _NoCreate:
    def do_tmem_op(self, domid, o):
        return 0


def test_the_protocol_is_what_compare_needs():
    assert isinstance(oracle.oracle_host(), oracle.Tmem)
    assert isinstance(oracle.DictTmem(), oracle.Tmem)
    assert not isinstance(_NoCreate(), oracle.Tmem)
    with pytest.raises(TypeError, match="does not satisfy"):
        oracle.compare(oracle.oracle_host, _NoCreate, CANONICAL)
    with pytest.raises(TypeError, match="not an implementation"):
        oracle.compare(oracle.oracle_host, 42, CANONICAL)


def test_compare_takes_instances_or_factories_and_names_them():
    built = oracle.DictTmem()                       # an instance: used as it is
    assert oracle.compare(oracle.oracle_host(), built, CANONICAL) is None
    assert sorted(built.domains) == [0, 1, 2]       # the trace's domains were created on it

    class DictTmem(oracle.BuggyDictTmem):            # the same name as the reference's class
        pass

    d = oracle.compare(oracle.DictTmem, DictTmem, CANONICAL)
    assert d.names == ("DictTmem (a)", "DictTmem (b)")
    assert "DictTmem (a) returned 1 (page 2), DictTmem (b) returned 1 (page 1)" in str(d)


def test_run_trace_outcomes_and_fresh_get_buffers():
    outcomes = oracle.run_trace(oracle.oracle_host, CANONICAL)
    assert outcomes == [oracle.Outcome(0), oracle.Outcome(1), oracle.Outcome(1),
                        oracle.Outcome(1, oracle.page_of(2))]
    assert CANONICAL[3][1].page is None             # the trace itself is not touched
    assert oracle.Outcome("raises KeyError").phrase == "raised KeyError"
    assert oracle.Outcome(-19).phrase == "returned -ENODEV"


# =================================================================================================
# The promises model
# =================================================================================================

def test_the_reference_keeps_every_promise_even_while_it_evicts():
    for seed in range(2):
        assert oracle.broken_promise(oracle.oracle_host, oracle.random_trace(100, seed)) is None
    small = Host(pages=360)          # 64 frames for the guests, 256 guarded: tmem gets ~40
    trace = oracle.random_trace(300, 1, n_oids=40, n_indexes=16, max_pool=1)
    assert oracle.broken_promise(small, trace, check=False) is None
    small.check()                                    # (every step: too slow with 300 steps)
    assert small.evicted_pgs > 0                     # it did evict, and broke no promise
    # ...which an exact comparison with a host that has room cannot tell from a bug
    fill = EPH + [(1, op(PUT, oid=(i, 0, 0), page=oracle.page_of(i))) for i in range(100)] \
        + [(1, op(GET, oid=(0, 0, 0)))]
    assert oracle.broken_promise(lambda: Host(pages=360), fill, check=False) is None
    d = oracle.compare(oracle.oracle_host, lambda: Host(pages=360), fill, check=False)
    assert d.step == 101 and d.a == oracle.Outcome(1, oracle.page_of(0)) and d.b.rc == 0


class _Evicting(oracle.DictTmem):
    """Drops a random ephemeral page now and then: allowed."""

    def __init__(self):
        super().__init__()
        self.rng = random.Random(5)

    def do_tmem_op(self, domid, o):
        for slots in self.domains.values():
            for pool in filter(None, slots):
                if not pool.persistent and pool.pages and self.rng.random() < 0.3:
                    del pool.pages[self.rng.choice(sorted(pool.pages))]
        return super().do_tmem_op(domid, o)


def test_a_toy_that_evicts_at_random_keeps_the_promises_but_differs():
    for seed in range(4):
        assert oracle.broken_promise(_Evicting, oracle.random_trace(200, seed)) is None
    assert oracle.first_difference_in(oracle.oracle_host, _Evicting, range(4), 200) is not None


class _StaleAfterFlush(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        if o.cmd == FLUSH:
            return 1                                 # says it flushed, keeps the page
        return super().do_tmem_op(domid, o)


class _SharedGets(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        if o.cmd == GET:
            pool = self.domains[domid][o.pool_id] if 0 <= o.pool_id < 16 else None
            if pool is not None and not pool.persistent:
                pool.persistent = True               # a private ephemeral get not exclusive
                try:
                    return super().do_tmem_op(domid, o)
                finally:
                    pool.persistent = False
        return super().do_tmem_op(domid, o)


class _LosesPersistent(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        rc = super().do_tmem_op(domid, o)
        for pool in filter(None, self.domains.get(domid, [])):
            if pool.persistent:
                pool.pages.clear()                   # evicts persistent pages: forbidden
        return rc


class _ZeroNotEmpty(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        rc = super().do_tmem_op(domid, o)
        return 0 if rc == -abi.EEMPTY else rc


class _AcceptsFloats(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        if o.cmd == PUT and type(o.index) is float:
            o = TmemOp(cmd=PUT, pool_id=o.pool_id, oid=o.oid, index=int(o.index), page=o.page)
        return super().do_tmem_op(domid, o)


class _WrongSlot(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        rc = super().do_tmem_op(domid, o)
        return 0 if o.cmd == NEW and rc > 0 else rc      # always slot 0


class _ObeysGuests(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        return 0 if o.cmd == abi.TMEM_CONTROL else super().do_tmem_op(domid, o)


class _PutSaysTwo(oracle.DictTmem):
    def do_tmem_op(self, domid, o):
        rc = super().do_tmem_op(domid, o)
        return 2 if o.cmd == PUT and rc == 1 else rc


EPH = [(1, op(NEW, flags=abi.pool_flags()))]
PERS = [(1, op(NEW, flags=abi.pool_flags(persist=True)))]
H = {"oid": (1, 0, 0), "index": 2}


@pytest.mark.parametrize("impl, trace, step, promise", [
    (oracle.BuggyDictTmem, CANONICAL, 3, "never another"),
    (_StaleAfterFlush, EPH + [(1, op(PUT, page=oracle.page_of(1), **H)), (1, op(FLUSH, **H)),
                              (1, op(GET, **H))], 3, "no page after a flush"),
    (_SharedGets, EPH + [(1, op(PUT, page=oracle.page_of(1), **H)), (1, op(GET, **H)),
                         (1, op(GET, **H))], 3, "no page after a flush, a miss"),
    (_LosesPersistent, PERS + [(1, op(PUT, page=oracle.page_of(1), **H)),
                               (1, op(FLUSH, oid=(9, 0, 0))), (1, op(GET, **H))], 3,
     "persistent page (page 1) comes back"),
    (_ZeroNotEmpty, PERS + [(1, op(GET, **H))], 1, "-EEMPTY from one that holds none"),
    (_AcceptsFloats, EPH + [(1, op(PUT, index=2.0, page=oracle.page_of(1)))], 1,
     "malformed op returns -EFAULT (index: 2.0 is a float, not an int)"),
    (_WrongSlot, EPH + [(1, op(NEW, flags=abi.pool_flags()))], 1, "a free pool slot"),
    (_ObeysGuests, [(1, op(abi.TMEM_CONTROL, subop=abi.TMEMC_FREEZE))], 0, "-EPERM"),
    (_PutSaysTwo, EPH + [(1, op(PUT, page=oracle.page_of(1)))], 1, "a put returns 1, -ENOMEM"),
    (oracle.DictTmem, EPH + [(1, op(FLUSH, pool_id=7))], None, None),
])
def test_each_broken_promise_is_named(impl, trace, step, promise):
    b = oracle.broken_promise(impl, trace)
    if step is None:
        assert b is None
        return
    assert b is not None and b.step == step and promise in b.promise, str(b)
    assert str(b).startswith(f"step {step}, dom1 {describe(trace[step][1])} {b.outcome.phrase}: ")


def test_promises_judge_outcomes_directly_and_check_their_invariants():
    m = oracle.Promises((1,))
    assert m.step(1, op(NEW, flags=abi.pool_flags(persist=True)), oracle.Outcome(0)) is None
    assert m.step(1, op(PUT, page=oracle.page_of(3)), oracle.Outcome(1)) is None
    m.check()
    assert m.step(1, op(GET), oracle.Outcome(1, oracle.page_of(3))) is None
    assert "comes back" in m.step(1, op(GET), oracle.Outcome(0))
    assert m.step(1, op(PUT, page=b"short"), oracle.Outcome(-errno.EFAULT)) is None
    assert m.step(1, op(GET), oracle.Outcome(-abi.EEMPTY)) is None      # the bad put flushed
    m.check()
    with pytest.raises(ValueError, match="not 2"):
        m.step(2, op(GET), oracle.Outcome(0))
    m.slots[1].append(None)
    with pytest.raises(InvariantError, match="invariant 1"):
        m.check()
    m.slots[1].pop()
    m.slots[1][0].pages[((1, 0, 0), -1)] = oracle.page_of(1)           # index not a u32
    with pytest.raises(InvariantError, match="invariant 2"):
        m.check()
    del m.slots[1][0].pages[((1, 0, 0), -1)]
    m.slots[1][0].pages[((1, 0, 0), 0)] = b"x"                          # not a page
    with pytest.raises(InvariantError, match="invariant 2"):
        m.check()


def test_the_promises_model_covers_guests_only():
    with pytest.raises(ValueError, match="guest"):
        oracle.broken_promise(oracle.oracle_host, [(0, op(abi.TMEM_CONTROL,
                                                          subop=abi.TMEMC_FREEZE))])


# =================================================================================================
# The Oracle a test gets
# =================================================================================================

def test_oracle_asserts_in_words_and_checks_its_invariants():
    o = oracle.Oracle()
    o.assert_agrees(oracle.DictTmem, oracle.random_trace(60, 2))
    o.assert_keeps_promises(_Evicting, oracle.random_trace(60, 2))
    with pytest.raises(AssertionError, match=r"BuggyDictTmem differs from the reference at "
                                             r"step 3, dom1 GET_PAGE"):
        o.assert_agrees(oracle.BuggyDictTmem, CANONICAL)
    with pytest.raises(AssertionError, match="BuggyDictTmem broke a promise at step 3"):
        o.assert_keeps_promises(oracle.BuggyDictTmem, CANONICAL)
    host = o.host()
    assert isinstance(host, Host) and sorted(host.mem.domains) == [0, 1, 2]
    assert repr(o) == "<Oracle reference=oracle_host domains=[1, 2]>"
    o.reference = None
    with pytest.raises(InvariantError, match="invariant 1"):
        o.check()
    with pytest.raises(InvariantError, match="invariant 2"):
        oracle.Oracle(domains={0: (8, 8)})
    with pytest.raises(InvariantError, match="invariant 2"):
        oracle.Oracle(domains={1: 8})


def test_trace_lines_replay_to_the_same_answers():
    from tmemref.cli import Session
    trace = oracle.random_trace(120, 7)
    s = Session()
    answers = [s.handle(__import__("json").loads(line)) for line in oracle.trace_lines(trace)]
    assert answers[:3] == [{"rc": 0}] * 3
    want = oracle.run_trace(oracle.oracle_host, trace)
    assert [a["rc"] for a in answers[3:]] == [w.rc for w in want]
    pages = [a.get("page") for a in answers[3:]]
    import base64
    assert [base64.b64decode(p) if p else None for p in pages] == [w.data for w in want]
    s.check()
