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
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

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
) + ["TmemOp", "Oid", "pool_flags", "rc_name", "CMD_NAMES", "SUBOP_NAMES"]

Oid = Tuple[int, int, int]

CMD_NAMES = {v: k for k, v in globals().items() if k.startswith("TMEM_") and k[5:] in {
    "CONTROL", "NEW_POOL", "DESTROY_POOL", "NEW_PAGE", "PUT_PAGE", "GET_PAGE", "FLUSH_PAGE",
    "FLUSH_OBJECT", "READ", "WRITE", "XCHG", "AUTH", "RESTORE_NEW"}}
SUBOP_NAMES = {v: k for k, v in globals().items() if k.startswith("TMEMC_")}


def pool_flags(persist: bool = False, shared: bool = False, *, version: int = TMEM_SPEC_VERSION,
               pagesize_field: int = 0) -> int:
    """The NEW_POOL ``flags`` word a Linux guest builds: type bits, page size field, version.

    >>> hex(pool_flags(shared=True))
    '0x1000002'
    """
    return ((TMEM_POOL_PERSIST if persist else 0) | (TMEM_POOL_SHARED if shared else 0)
            | (pagesize_field << TMEM_POOL_PAGESIZE_SHIFT) | (version << TMEM_POOL_VERSION_SHIFT))


def rc_name(rc: int) -> str:
    """Name a hypercall return value: ``-ENODEV``, ``-EFROZEN``, or the number itself if >= 0."""
    if rc >= 0:
        return str(rc)
    if -rc == EFROZEN:
        return "-EFROZEN"
    if -rc == EEMPTY:
        return "-EEMPTY"
    if -rc == errno.EOPNOTSUPP:
        return "-EOPNOTSUPP"             # Linux's errno table calls 95 ENOTSUP; Xen says EOPNOTSUPP
    return "-" + errno.errorcode.get(-rc, str(-rc))


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
