"""tmemref.abi: explain() names the field Xen cannot copy in and why; TmemOp's repr; the
argument checks of rc_name and pool_flags.

The copy-in rule is facts §3.1 step 1 (a struct tmem_op that cannot be copied from the guest is
-EFAULT): every u32 field an int in [0, 2**32), pool_id any 32-bit pattern, oid three u64
words, uuid two. Every op explain() rejects is also sent to a Host, which must answer -EFAULT.
"""
from __future__ import annotations

import decimal
import errno
import hashlib
import itertools

import numpy as np
import pytest

from tmemref import Host, TmemOp, abi

PAGE = abi.PAGE_SIZE
EFAULT = -errno.EFAULT
U32 = ("cmd", "flags", "arg1", "arg2", "index", "subop", "cli_id")


def engine_rc(op) -> int:
    host = Host(pages=1024)
    host.create_domain(1, pages=16)
    rc = host.do_tmem_op(1, op)
    host.check()
    return rc


def put(**kw):
    return TmemOp(**{"cmd": abi.TMEM_PUT_PAGE, "page": bytes(PAGE), **kw})


# (value, words of the reason) for every integer field: wrong kinds of value, and the ends of
# its range. None of these equals a field's default (see the REPORTED test below for those).
NOT_INTS = [(1.0, "1.0 is a float, not an int"), (True, "True is a bool, not an int"),
            ("1", "'1' is a str, not an int"), (None, "None is a NoneType, not an int"),
            (decimal.Decimal(1), "is a decimal.Decimal, not an int"),
            (np.int64(1), "is a numpy.int64, not an int"), (b"\x01", "is a bytes, not an int")]


@pytest.mark.parametrize("field", sorted(abi.INT_FIELDS))
@pytest.mark.parametrize("value, words", NOT_INTS, ids=[type(v).__name__ for v, _ in NOT_INTS])
def test_explain_names_a_field_that_is_not_an_int(field, value, words):
    op = put(**{field: value})
    assert op.explain() == abi.explain(op)
    assert op.explain().startswith(f"{field}: ") and words in op.explain()
    assert engine_rc(op) == EFAULT


@pytest.mark.parametrize("field", sorted(abi.INT_FIELDS))
def test_explain_names_a_field_out_of_its_range(field):
    low, end, what = abi.INT_FIELDS[field]
    for bad in (low - 1, end, end + 12345, -(2**64)):
        op = put(**{field: bad})
        assert op.explain() == f"{field}: {bad} is outside " \
                               f"[{'-2**31' if low else '0'}, 2**32) ({what})"
        assert engine_rc(op) == EFAULT
    assert put(**{field: end - 1}).explain() is None            # the ends are inside
    assert put(**{field: low}).explain() is None


@pytest.mark.parametrize("field, n", sorted(abi.WORD_FIELDS.items()))
def test_explain_names_oid_and_uuid_problems(field, n):
    good = [0] * n
    cases = [(list(good), "is a list, not a tuple of"),
             (tuple(good[:-1]), f"{n - 1} words, not {n}"),
             (tuple(good) + (0,), f"{n + 1} words, not {n}"), (7, "7 is a int, not a tuple")]
    for i, (bad, words) in itertools.product(range(n), [(-1, "-1 is outside [0, 2**64) (a u64)"),
                                                        (2**64, f"{2**64} is outside [0, 2**64)"),
                                                        (1.0, "1.0 is a float"),
                                                        (True, "True is a bool")]):
        words_i = list(good)
        words_i[i] = bad
        cases.append((tuple(words_i), f"[{i}]: " + words))
    for value, words in cases:
        op = put(**{field: value})
        why = op.explain()
        assert why.startswith(field) and words in why, why
        assert engine_rc(op) == EFAULT, why
    assert put(**{field: (2**64 - 1,) * n}).explain() is None


def test_explain_reports_the_first_bad_field_in_struct_order():
    op = put(cmd=-1, index=1.5, oid=[1])
    assert op.explain().startswith("cmd: ")
    assert put(index=1.5, oid=[1]).explain().startswith("oid: ")     # oid precedes index


def test_explain_the_guest_frame():
    """§3.4-3.5: a put reads 4096 bytes from the frame, a get writes 4096 into it."""
    assert put(page=b"short").explain() == "page: 5 bytes, not 4096"
    assert put(page=None).explain() == "page: None: no buffer given"
    assert put(page="x" * PAGE).explain().startswith("page: 'xxx")
    strided = np.zeros(2 * PAGE, np.uint8)[::2]
    assert put(page=strided).explain() == "page: not contiguous"
    assert put(page=np.zeros(PAGE, np.uint8)).explain() is None
    get = TmemOp(cmd=abi.TMEM_GET_PAGE, page=bytes(PAGE))
    assert get.explain() == "page: a read-only bytes: the hypervisor writes into it"
    assert TmemOp(cmd=abi.TMEM_GET_PAGE, page=memoryview(bytearray(PAGE))).explain() is None
    lst = TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, arg1=100)
    assert lst.explain() == "buf: None: no buffer given"
    assert TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, buf=b"ro").explain() == \
        "buf: a read-only bytes: the hypervisor writes into it"
    lst.buf = bytearray(100)
    assert lst.explain() is None
    assert TmemOp(cmd=abi.TMEM_FLUSH_PAGE, page="ignored").explain() is None
    assert abi.explain("a dict") == "op: 'a dict' is a str, not a TmemOp"


def test_the_engine_refuses_what_explain_names_in_the_frame():
    host = Host(pages=1024)
    host.create_domain(1, pages=16)
    pool = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    assert host.do_tmem_op(1, put(pool_id=pool, page=b"short")) == EFAULT
    assert host.do_tmem_op(1, put(pool_id=pool)) == 1
    assert host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool,
                                     page=bytes(PAGE))) == EFAULT
    lst = TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, cli_id=abi.TMEM_CLI_ID_NULL,
                 buf=b"ro", arg1=2)
    assert host.do_tmem_op(0, lst) == EFAULT
    host.check()


def test_explain_accepts_every_well_formed_extreme():
    for kw in ({"cmd": 2**32 - 1}, {"pool_id": -(2**31)}, {"pool_id": 2**32 - 1},
               {"oid": (2**64 - 1,) * 3, "index": 2**32 - 1}, {"uuid": (2**64 - 1, 0)},
               {"cli_id": 0}, {"flags": 2**32 - 1}):
        assert put(**kw).explain() is None, kw


def test_reported_pool_id_is_any_32_bit_pattern():
    """REPORTED (engine, core/host.py _op_ok): a pool id is any 32-bit pattern; one of 2**31
    or more is a slot that does not exist, -ENODEV, not a failed copy. Fails until the engine
    takes [-2**31, 2**32) as explain() does."""
    for pool_id in (2**31, 2**32 - 1):
        assert put(pool_id=pool_id).explain() is None
        assert engine_rc(put(pool_id=pool_id)) == -errno.ENODEV


def test_reported_a_value_equal_to_the_default_is_still_not_an_int():
    """REPORTED (engine, core/host.py _op_ok fast path): the fields a page op does not read
    are compared with their defaults by ``==``, so 0.0, False or np.int64(0) slip through —
    and NEW_POOL with flags=0.0 then raises TypeError inside the hypercall. The documented
    rule (every field an int) says -EFAULT. Fails until the fast path checks types."""
    for cmd, field, value in ((abi.TMEM_PUT_PAGE, "flags", 0.0), (abi.TMEM_PUT_PAGE, "arg1", False),
                              (abi.TMEM_PUT_PAGE, "cli_id", 65535.0),
                              (abi.TMEM_PUT_PAGE, "uuid", (0.0, 0)),
                              (abi.TMEM_NEW_POOL, "flags", np.int64(0)),
                              (abi.TMEM_NEW_POOL, "flags", 0.0)):
        op = TmemOp(cmd=cmd, page=bytes(PAGE), **{field: value})
        assert op.explain().startswith(field)
        assert engine_rc(op) == EFAULT, op


# =================================================================================================
# repr
# =================================================================================================

def test_repr_shows_a_page_by_length_and_digest():
    page = bytes(range(256)) * 16
    op = put(pool_id=2, oid=(7, 0, 0), index=3, page=page)
    digest = hashlib.sha1(page).hexdigest()[:8]
    assert repr(op) == ("TmemOp(cmd=TMEM_PUT_PAGE, pool_id=2, oid=(7, 0, 0), index=3, "
                        f"page=<bytes of 4096 bytes, sha1 {digest}>)")
    get = TmemOp(cmd=abi.TMEM_GET_PAGE, page=bytearray(PAGE))
    assert repr(get) == "TmemOp(cmd=TMEM_GET_PAGE, page=<bytearray of 4096 bytes, sha1 " \
                        f"{hashlib.sha1(bytes(PAGE)).hexdigest()[:8]}>)"
    lst = TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, cli_id=1, buf=bytearray(32768))
    assert repr(lst).startswith("TmemOp(cmd=TMEM_CONTROL, subop=4, cli_id=1, buf=<bytearray "
                                "of 32768 bytes, sha1 ")
    assert repr(TmemOp(cmd=77, flags=0.0)) == "TmemOp(cmd=77, flags=0.0)"   # 0.0 is not 0
    assert repr(TmemOp(cmd=1, uuid=(False, 0))) == "TmemOp(cmd=TMEM_NEW_POOL, uuid=(False, 0))"
    assert repr(TmemOp(cmd="x" * 100)).startswith("TmemOp(cmd='xxxxxxxxxx")
    assert len(repr(TmemOp(cmd="x" * 100))) < 60
    numpy_page = put(page=np.zeros(PAGE, np.uint8))
    assert "numpy.ndarray of 4096 bytes" in repr(numpy_page)
    assert len(repr(put(page=bytes(PAGE), oid=(1, 2, 3), uuid=(4, 5), flags=6, arg1=7,
                        arg2=8, subop=9, cli_id=10, index=11))) < 250


def test_a_failing_assertion_does_not_print_the_page():
    host = Host(pages=1024)
    host.create_domain(1, pages=16)
    op = put(page=b"\x01" * PAGE)
    with pytest.raises(AssertionError) as e:
        assert host.do_tmem_op(1, op) == 1            # no pool: -ENODEV
    message = str(e.value)
    assert "where -19 = " in message and "page=<bytes of 4096 bytes, sha1 " in message
    assert "\\x01\\x01" not in message and len(message) < 600


# =================================================================================================
# rc_name, pool_flags
# =================================================================================================

@pytest.mark.parametrize("bad", [None, 1.5, "-19", True, [1]])
def test_rc_name_rejects_what_is_not_an_integer(bad):
    with pytest.raises(TypeError, match="rc_name: a return value is an int"):
        abi.rc_name(bad)


def test_rc_name_takes_any_integer():
    assert abi.rc_name(np.int64(-19)) == "-ENODEV"
    assert abi.rc_name(-abi.EFROZEN) == "-EFROZEN" and abi.rc_name(2**40) == str(2**40)
    assert abi.rc_name(-99999) == "-99999"


@pytest.mark.parametrize("kw, exc, words", [
    ({"version": 999}, ValueError, "version=999 does not fit its 8-bit field [0, 255]"),
    ({"version": -1}, ValueError, "version=-1"),
    ({"version": 256}, ValueError, "8-bit"),
    ({"version": 1.0}, TypeError, "version must be an int, not float"),
    ({"version": None}, TypeError, "version must be an int"),
    ({"pagesize_field": 16}, ValueError, "pagesize_field=16 does not fit its 4-bit field"),
    ({"pagesize_field": -1}, ValueError, "4-bit"),
    ({"persist": 2}, ValueError, "persist must be True or False"),
    ({"shared": "yes"}, TypeError, "shared must be True or False"),
    ({"persist": None}, TypeError, "persist"),
])
def test_pool_flags_rejects_values_wider_than_their_fields(kw, exc, words):
    with pytest.raises(exc) as e:
        abi.pool_flags(**kw)
    assert words in str(e.value)


def test_pool_flags_every_valid_word_fits_32_bits():
    for persist, shared, version, ps in itertools.product((False, True), (0, 1), (0, 1, 255),
                                                          (0, 15)):
        word = abi.pool_flags(persist, shared, version=version, pagesize_field=ps)
        assert 0 <= word < 2**32
        assert (word >> abi.TMEM_POOL_VERSION_SHIFT) == version
        assert (word >> abi.TMEM_POOL_PAGESIZE_SHIFT) & 0xF == ps
        assert word & 3 == int(persist) | 2 * int(shared)
