"""Xen: ``public/tmem.h`` (ABI v1) — the numbers a guest and a tool see, and ``struct tmem_op``.

Every name and value here is the one Xen's public header published (v1, Xen 4.1-4.5, with the
classic ``TMEMC_*`` control sub-op numbering of Xen <= 4.7). Errors travel as negative Linux errno
values, as a hypercall returns them.

>>> TMEM_PUT_PAGE, TMEM_GET_PAGE, TMEMC_LIST, EEMPTY
(4, 5, 4, 1001)
>>> pool_flags(persist=True) == TMEM_POOL_PERSIST | (TMEM_SPEC_VERSION << TMEM_POOL_VERSION_SHIFT)
True
>>> rc_name(-1000), rc_name(-19), rc_name(1)
('-EFROZEN', '-ENODEV', '1')
>>> TmemOp(cmd=TMEM_PUT_PAGE, oid=(7, 0, 0), index=2**32, page=bytes(4096)).explain()
'index: 4294967296 is outside [0, 2**32) (a u32)'
"""
from __future__ import annotations

import errno
import hashlib
import operator
from dataclasses import dataclass, field, fields
from typing import Any, List, Optional, Tuple

#: Hypercall number of ``__HYPERVISOR_tmem_op``.
HYPERVISOR_TMEM_OP = 38
#: Version a guest must put in the NEW_POOL flags (bits 24-31).
TMEM_SPEC_VERSION = 1

# --- commands (struct tmem_op.cmd) ---------------------------------------------------------------
TMEM_CONTROL = 0            # privileged: the TMEMC_* sub-ops below
TMEM_NEW_POOL = 1
TMEM_DESTROY_POOL = 2
TMEM_NEW_PAGE = 3           # <= 4.3 only; -ENOSYS here (4.4+)
TMEM_PUT_PAGE = 4
TMEM_GET_PAGE = 5
TMEM_FLUSH_PAGE = 6
TMEM_FLUSH_OBJECT = 7
TMEM_READ = 8               # <= 4.3 sub-page get; -ENOSYS here
TMEM_WRITE = 9              # <= 4.3 sub-page put; -ENOSYS here
TMEM_XCHG = 10              # never implemented; -ENOSYS here
TMEM_AUTH = 101             # privileged: authorise a client for a shared pool uuid
TMEM_RESTORE_NEW = 102      # privileged: create a pool with a given id for a client

# --- TMEM_CONTROL sub-ops (classic numbering, <= 4.7) -----------------------------------------
TMEMC_THAW = 0
TMEMC_FREEZE = 1
TMEMC_FLUSH = 2
TMEMC_DESTROY = 3
TMEMC_LIST = 4
TMEMC_SET_WEIGHT = 5
TMEMC_SET_CAP = 6
TMEMC_SET_COMPRESS = 7
TMEMC_QUERY_FREEABLE_MB = 8
TMEMC_SAVE_BEGIN = 10
TMEMC_SAVE_GET_VERSION = 11
TMEMC_SAVE_GET_MAXPOOLS = 12
TMEMC_SAVE_GET_CLIENT_WEIGHT = 13
TMEMC_SAVE_GET_CLIENT_CAP = 14
TMEMC_SAVE_GET_CLIENT_FLAGS = 15
TMEMC_SAVE_GET_POOL_FLAGS = 16
TMEMC_SAVE_GET_POOL_NPAGES = 17
TMEMC_SAVE_GET_POOL_UUID = 18
TMEMC_SAVE_GET_NEXT_PAGE = 19
TMEMC_SAVE_GET_NEXT_INV = 20
TMEMC_SAVE_END = 21
TMEMC_RESTORE_BEGIN = 30
TMEMC_RESTORE_PUT_PAGE = 32
TMEMC_RESTORE_FLUSH_PAGE = 33

# --- NEW_POOL flags ------------------------------------------------------------------------------
TMEM_POOL_PERSIST = 1
TMEM_POOL_SHARED = 2
TMEM_POOL_PRECOMPRESSED = 4
TMEM_POOL_PAGESIZE_SHIFT = 4
TMEM_POOL_PAGESIZE_MASK = 0xF
TMEM_POOL_VERSION_SHIFT = 24
TMEM_POOL_VERSION_MASK = 0xFF
TMEM_POOL_RESERVED_BITS = 0x00FFFF00

# --- client flags (save stream) -----------------------------------------------------------------
TMEM_CLIENT_COMPRESS = 1
TMEM_CLIENT_FROZEN = 2

# --- special return values (returned negated) ----------------------------------------------------
EFROZEN = 1000
EEMPTY = 1001

#: (domid_t)-1: "all clients" in control operations.
TMEM_CLI_ID_NULL = 0xFFFF
MAX_POOLS_PER_DOMAIN = 16
MAX_GLOBAL_SHARED_POOLS = 16
OBJ_HASH_BUCKETS = 256
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

__all__ = sorted(
    n for n in globals() if n.isupper() and not n.startswith("_")
) + ["TmemOp", "Oid", "pool_flags", "rc_name", "explain", "CMD_NAMES", "SUBOP_NAMES"]

Oid = Tuple[int, int, int]

CMD_NAMES = {v: k for k, v in globals().items() if k.startswith("TMEM_") and k[5:] in {
    "CONTROL", "NEW_POOL", "DESTROY_POOL", "NEW_PAGE", "PUT_PAGE", "GET_PAGE", "FLUSH_PAGE",
    "FLUSH_OBJECT", "READ", "WRITE", "XCHG", "AUTH", "RESTORE_NEW"}}
SUBOP_NAMES = {v: k for k, v in globals().items() if k.startswith("TMEMC_")}


def _flag_bit(name: str, value) -> int:
    if type(value) not in (bool, int):
        raise TypeError(f"pool_flags: {name} must be True or False, not {value!r}")
    if value not in (0, 1):
        raise ValueError(f"pool_flags: {name} must be True or False (or 1 or 0), not {value}")
    return int(value)


def _field_value(name: str, value, bits: int) -> int:
    if type(value) is not int:
        raise TypeError(f"pool_flags: {name} must be an int, not {type(value).__name__} "
                        f"({value!r})")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"pool_flags: {name}={value} does not fit its {bits}-bit field "
                         f"[0, {(1 << bits) - 1}]")
    return value


def pool_flags(persist: bool = False, shared: bool = False, *, version: int = TMEM_SPEC_VERSION,
               pagesize_field: int = 0) -> int:
    """The NEW_POOL ``flags`` word a Linux guest builds: type bits, page size field, version.

    ``persist`` and ``shared`` are booleans (or 0/1); ``version`` must fit its 8 bits and
    ``pagesize_field`` its 4: anything else is a ``TypeError`` or ``ValueError``, never a word
    wider than its fields. (A version other than 1, or a non-zero page size field, builds a
    valid word that the hypervisor then refuses with -EPERM.) O(1).

    >>> hex(pool_flags(shared=True))
    '0x1000002'
    >>> pool_flags(version=999)
    Traceback (most recent call last):
    ValueError: pool_flags: version=999 does not fit its 8-bit field [0, 255]
    """
    return ((TMEM_POOL_PERSIST if _flag_bit("persist", persist) else 0)
            | (TMEM_POOL_SHARED if _flag_bit("shared", shared) else 0)
            | (_field_value("pagesize_field", pagesize_field, 4) << TMEM_POOL_PAGESIZE_SHIFT)
            | (_field_value("version", version, 8) << TMEM_POOL_VERSION_SHIFT))


def rc_name(rc: int) -> str:
    """Name a hypercall return value: ``-ENODEV``, ``-EFROZEN``, or the number itself if >= 0.
    ``TypeError`` for anything that is not an integer (``None``, a float, a bool). O(1).

    >>> rc_name(-95), rc_name(-1001)
    ('-EOPNOTSUPP', '-EEMPTY')
    """
    if type(rc) is bool:
        raise TypeError("rc_name: a return value is an int, not a bool")
    try:
        rc = operator.index(rc)
    except TypeError:
        raise TypeError(f"rc_name: a return value is an int, not {type(rc).__name__} "
                        f"({rc!r})") from None
    if rc >= 0:
        return str(rc)
    if -rc == EFROZEN:
        return "-EFROZEN"
    if -rc == EEMPTY:
        return "-EEMPTY"
    if -rc == errno.EOPNOTSUPP:
        return "-EOPNOTSUPP"             # Linux's errno table calls 95 ENOTSUP; Xen says EOPNOTSUPP
    return "-" + errno.errorcode.get(-rc, str(-rc))


# --- what a C struct tmem_op can hold -----------------------------------------------------------
#: The integer fields of ``struct tmem_op`` and the values each can hold: ``(low, end, what)``.
#: ``pool_id`` is any 32-bit pattern, read signed or unsigned (an id of 16 or more is -ENODEV).
INT_FIELDS = {
    "cmd": (0, 1 << 32, "a u32"), "pool_id": (-(1 << 31), 1 << 32, "a 32-bit pool id"),
    "flags": (0, 1 << 32, "a u32"), "arg1": (0, 1 << 32, "a u32"),
    "index": (0, 1 << 32, "a u32"), "subop": (0, 1 << 32, "a u32"),
    "cli_id": (0, 1 << 32, "a u32"), "arg2": (0, 1 << 32, "a u32"),
}
#: The fields made of 64-bit words, and how many words each has.
WORD_FIELDS = {"uuid": 2, "oid": 3}
_BOUND = {0: "0", 1 << 32: "2**32", -(1 << 31): "-2**31", 1 << 64: "2**64"}


def _short(value) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def _type_name(value) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _int_problem(value, low: int, end: int, what: str) -> Optional[str]:
    """Why ``value`` is not an integer a C field of ``[low, end)`` can hold, or None."""
    if type(value) is bool:
        return f"{value!r} is a bool, not an int (a C field holds no bool)"
    if type(value) is not int:
        return f"{_short(value)} is a {_type_name(value)}, not an int"
    if not low <= value < end:
        return f"{value} is outside [{_BOUND[low]}, {_BOUND[end]}) ({what})"
    return None


def _frame_problem(page, writable: bool, size: Optional[int] = PAGE_SIZE) -> Optional[str]:
    """Why ``page`` is not a frame of ``size`` bytes (any size if None) that a put reads (or,
    ``writable``, a get writes), or None."""
    if page is None:
        return "None: no buffer given"
    try:
        m = memoryview(page)
    except TypeError:
        return f"{_short(page)} is a {_type_name(page)}, not a bytes-like buffer"
    if size is not None and m.nbytes != size:
        return f"{m.nbytes} bytes, not {PAGE_SIZE}"
    if not m.c_contiguous:
        return "not contiguous"
    if writable and m.readonly:
        return f"a read-only {_type_name(page)}: the hypervisor writes into it"
    return None


def explain(op) -> Optional[str]:
    """Why the hypervisor cannot use ``op``, naming the field and the reason; None if it can.

    The hypercall itself only says -EFAULT. In the order Xen meets them:

    1. copying ``struct tmem_op`` in: every integer field must be an ``int`` a C field can
       hold (:data:`INT_FIELDS`: u32 fields in [0, 2**32), ``pool_id`` in [-2**31, 2**32)),
       ``oid`` a tuple of three and ``uuid`` a tuple of two u64 words, in [0, 2**64).
       Strictly ``int``: a ``bool``, ``float``, ``Decimal`` or numpy scalar is not one, even
       when it equals an integer. A field that fails is -EFAULT before anything else.
    2. the guest frame: a PUT_PAGE's ``page`` must be 4096 contiguous bytes (else -EFAULT
       when the put reaches it), a GET_PAGE's a writable such buffer (-EFAULT when a page is
       found to copy into it); TMEMC_LIST needs a writable ``buf``.

    Returns ``"field: reason"`` for the first field that fails, e.g. ``"oid[1]: -1 is outside
    [0, 2**64) (a u64)"``. O(1).

    >>> explain(TmemOp(cmd=TMEM_GET_PAGE, pool_id=1.0))
    'pool_id: 1.0 is a float, not an int'
    >>> explain(TmemOp(cmd=TMEM_PUT_PAGE, page=b"short")), explain(TmemOp(cmd=TMEM_FLUSH_PAGE))
    ('page: 5 bytes, not 4096', None)
    """
    if not isinstance(op, TmemOp):
        return f"op: {_short(op)} is a {_type_name(op)}, not a TmemOp"
    for name in _FIELD_ORDER:
        value = getattr(op, name)
        if name in INT_FIELDS:
            why = _int_problem(value, *INT_FIELDS[name])
        elif type(value) is not tuple:
            why = f"{_short(value)} is a {_type_name(value)}, not a tuple of " \
                  f"{WORD_FIELDS[name]} u64 words"
        elif len(value) != WORD_FIELDS[name]:
            why = f"{len(value)} words, not {WORD_FIELDS[name]}"
        else:
            for i, word in enumerate(value):
                why = _int_problem(word, 0, 1 << 64, "a u64")
                if why:
                    return f"{name}[{i}]: {why}"
        if why:
            return f"{name}: {why}"
    if op.cmd in (TMEM_PUT_PAGE, TMEM_GET_PAGE):
        why = _frame_problem(op.page, op.cmd == TMEM_GET_PAGE)
        return f"page: {why}" if why else None
    if op.cmd == TMEM_CONTROL and op.subop == TMEMC_LIST:
        why = _frame_problem(op.buf, True, None)
        return f"buf: {why}" if why else None
    return None


def _frame_repr(data) -> str:
    try:
        m = memoryview(data)
    except TypeError:
        return _short(data)
    return f"<{_type_name(data)} of {m.nbytes} bytes, sha1 " \
           f"{hashlib.sha1(m.tobytes()).hexdigest()[:8]}>"


@dataclass(slots=True)
class TmemOp:
    """Xen: ``struct tmem_op`` — one hypercall's argument, flattened.

    The C struct is a union; here every member is a field and each command reads the ones it
    needs: ``creat`` (NEW_POOL, AUTH, RESTORE_NEW) reads ``uuid, flags, arg1``; ``gen`` (page ops)
    reads ``oid, index`` and the guest frame ``page``; ``ctrl`` (CONTROL) reads
    ``subop, cli_id, arg1, arg2, oid, buf``.

    ``page`` stands for the guest frame (``cmfn``): a 4096-byte bytes-like object for a put, a
    writable 4096-byte buffer (``bytearray``, writable ``memoryview`` or uint8 numpy array) that a
    get fills. ``buf`` is the control buffer (a ``bytearray``) that LIST and save sub-ops fill.
    """
    cmd: int                                  # TMEM_* command
    pool_id: int = 0                          # int32 pool handle in the caller's client
    uuid: Tuple[int, int] = (0, 0)            # creat: shared pool uuid (lo, hi)
    flags: int = 0                            # creat: pool flags; AUTH: 1 authorise / 0 revoke
    arg1: int = 0                             # creat: target cli_id; ctrl: first argument
    oid: Oid = (0, 0, 0)                      # gen/ctrl: object id, three u64 words
    index: int = 0                            # gen: u32 page index in the object
    page: Any = None                          # gen: the guest frame (see above)
    subop: int = 0                            # ctrl: TMEMC_* sub-op
    cli_id: int = TMEM_CLI_ID_NULL            # ctrl: target client, 0xFFFF = all
    arg2: int = 0                             # ctrl: second argument
    buf: Optional[bytearray] = field(default=None, repr=False)  # ctrl: output/input buffer

    def explain(self) -> Optional[str]:
        """:func:`explain` of this op: ``"field: reason"`` for the first field the hypervisor
        cannot use, or None."""
        return explain(self)

    def set_fields(self) -> List[Tuple[str, Any]]:
        """``[(name, value)]`` of the fields, ``cmd`` aside, that differ from their defaults —
        in value, or in type (0.0 and False are not 0) — in struct order. O(fields)."""
        return [(name, getattr(self, name)) for name in _FIELD_ORDER[1:] + ("page", "buf")
                if not _is_default(getattr(self, name), _DEFAULTS[name])]

    def __repr__(self) -> str:
        """The command by name and the fields that differ from their defaults; a page or
        buffer by type, length and sha1 prefix, never its bytes."""
        cmd = CMD_NAMES.get(self.cmd) if type(self.cmd) is int else None
        parts = [f"cmd={cmd or _short(self.cmd)}"]
        parts += [f"{name}={_frame_repr(value) if name in ('page', 'buf') else _short(value)}"
                  for name, value in self.set_fields()]
        return f"TmemOp({', '.join(parts)})"

    def _repr_pretty_(self, printer, cycle) -> None:
        """The same, for IPython's and Hypothesis's pretty printers (which would otherwise
        print a dataclass field by field, a page as its 4096 bytes)."""
        printer.text(repr(self))


def _is_default(value, default) -> bool:
    """``value`` is ``default``: equal, and of the same types (0.0 and False are not 0)."""
    if value is default:
        return True
    if type(value) is not type(default) or value != default:
        return False
    return type(value) is not tuple or all(type(a) is type(b) for a, b in zip(value, default))


_FIELD_ORDER = ("cmd", "pool_id", "uuid", "flags", "arg1", "oid", "index", "subop", "cli_id",
                "arg2")
_DEFAULTS = {f.name: f.default for f in fields(TmemOp)}
