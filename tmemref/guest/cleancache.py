"""Linux: cleancache on Xen tmem — ``tmem_cleancache_*`` of ``drivers/xen/tmem.c``.

Cleancache is a second-chance cache for clean page-cache pages. When the kernel drops a clean
page of a file it *puts* it; before reading a page from disk it tries a *get*; when a file
changes or is deleted it *invalidates*. Each mounted filesystem gets one **ephemeral** pool —
private, or, for a cluster filesystem, shared by uuid — so tmem may drop any page at any time,
and a get from a private pool is exclusive (the page leaves tmem).

The mapping, as Linux's Xen shim did it:

==========================  ======================================================
cleancache operation        hypercall
==========================  ======================================================
``init_fs(pagesize)``       NEW_POOL, ephemeral private, uuid (0, 0)
``init_shared_fs(uuid)``    NEW_POOL, ephemeral SHARED, uuid bytes 0-7 / 8-15 (LE)
``put_page``                PUT_PAGE, oid = the file key, index = page index
``get_page``                GET_PAGE; 0 only if Xen returned 1, else -1
``invalidate_page``         FLUSH_PAGE
``invalidate_inode``        FLUSH_OBJECT
``invalidate_fs``           DESTROY_POOL
==========================  ======================================================

>>> from tmemref import Host
>>> host = Host(pages=1024)
>>> _ = host.create_domain(1, pages=64, max_pages=128)
>>> cc = Cleancache(host, 1)
>>> fs = cc.init_fs()
>>> cc.put_page(fs, 12, 0, b"A" * 4096)          # page 0 of inode 12
>>> buf = bytearray(4096)
>>> cc.get_page(fs, 12, 0, buf), bytes(buf[:1])
(0, b'A')
>>> cc.get_page(fs, 12, 0, buf)                  # exclusive: the first get took it
-1
>>> cc.succ_gets, cc.failed_gets, cc.puts
(1, 1, 1)
"""
from __future__ import annotations

import uuid as _uuid
from collections import Counter
from typing import Tuple

from .. import abi
from .ops import PAGE_SIZE, PRIVATE_UUID, TmemOps

_U32 = 1 << 32
_U64 = 1 << 64
#: Linux: CLEANCACHE_KEY_MAX — a file key is at most 6 u32 words (24 bytes) = 3 u64.
KEY_BYTES = 24


def filekey_oid(key) -> abi.Oid:
    """Linux: ``*(struct tmem_oid *)&key`` — a ``cleancache_filekey`` read as three u64 words.

    ``key`` is what ``cleancache_get_key`` produced:

    * an ``int`` — an inode number (most filesystems): oid ``(ino, 0, 0)``;
    * ``bytes`` of at most 24 — an exported file handle (filesystems with ``encode_fh``), in
      the zero-filled key, read as three little-endian u64 words (x86);
    * a tuple of three u64 words — already an oid.

    >>> filekey_oid(12)
    (12, 0, 0)
    >>> filekey_oid(bytes([1, 0, 0, 0, 2, 0, 0, 0, 3]))   # fh = (1, 2, 3) as u32 words
    (8589934593, 3, 0)
    """
    if isinstance(key, bool):
        raise TypeError("a file key is an inode number, a file handle or an oid, not a bool")
    if isinstance(key, int):
        if not 0 <= key < _U64:
            raise ValueError(f"inode number {key} does not fit in 64 bits")
        return (key, 0, 0)
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if len(raw) > KEY_BYTES:
            raise ValueError(f"a file handle has at most {KEY_BYTES} bytes, not {len(raw)}")
        raw = raw.ljust(KEY_BYTES, b"\0")
        return tuple(int.from_bytes(raw[i:i + 8], "little") for i in (0, 8, 16))
    if isinstance(key, tuple) and len(key) == 3 and all(
            type(w) is int and 0 <= w < _U64 for w in key):
        return key
    raise TypeError(f"not a cleancache file key: {key!r}")


def uuid_words(fs_uuid) -> Tuple[int, int]:
    """Linux: ``tmem_cleancache_init_shared_fs`` — (uuid_lo, uuid_hi) from the 16 uuid bytes:
    bytes 0-7 and 8-15, each read as a little-endian u64 (what an x86 kernel's pointer cast
    reads). ``fs_uuid``: 16 bytes or a :class:`uuid.UUID` (its ``.bytes``, textual order).

    >>> [hex(w) for w in uuid_words(bytes(range(16)))]
    ['0x706050403020100', '0xf0e0d0c0b0a0908']
    """
    if isinstance(fs_uuid, _uuid.UUID):
        fs_uuid = fs_uuid.bytes
    raw = bytes(fs_uuid)
    if len(raw) != 16:
        raise ValueError(f"a filesystem uuid has 16 bytes, not {len(raw)}")
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def _check_index(index) -> None:
    if type(index) is not int or not 0 <= index < _U64:
        raise ValueError(f"a page index is a pgoff_t (unsigned 64-bit), not {index!r}")


class Cleancache:
    """Linux: the Xen tmem backend of cleancache (``tmem_cleancache_ops``), one guest's.

    ``Cleancache(host, domid, trace=False)`` (``trace``: ``True`` or a list to record the
    hypercalls in, see :class:`~tmemref.guest.ops.TmemOps`). Pool ids are what ``init_fs``
    returned; a negative id (a failed init) makes every later call a no-op (gets fail), as in
    Linux.

    Methods: :meth:`init_fs`, :meth:`init_shared_fs`, :meth:`put_page`, :meth:`get_page`,
    :meth:`invalidate_page`, :meth:`invalidate_inode`, :meth:`invalidate_fs`. Each costs at
    most one hypercall. ``ops`` is the underlying :class:`~tmemref.guest.ops.TmemOps` (its
    ``trace`` records every hypercall).

    Counters (``/sys/kernel/debug/cleancache``, kept by ``mm/cleancache.c``):

    * ``succ_gets`` — gets that returned 0 (the page came back);
    * ``failed_gets`` — gets that returned -1 (not there, pool < 0, index too big, error);
    * ``puts`` — puts with a valid pool (counted even if the backend then skips the page
      because its index does not fit in 32 bits, or Xen refuses it: a put "always succeeds");
    * ``invalidates`` — ``invalidate_page`` calls with a valid pool (inode and fs
      invalidations are not counted, as in Linux).

    ``put_results`` counts Xen's return values of the put hypercalls, which Linux ignores.

    Xen/Linux: the frontend ``mm/cleancache.c`` also maps each superblock to a "fake" pool id
    (1000+, 2000+ for shared) so filesystems mounted before the backend registered get pools
    later; that layer is not modelled — callers hold the real pool ids.
    """

    def __init__(self, host, domid: int, trace=False):
        self.ops = TmemOps(host, domid, trace)   # the raw hypercalls
        self.succ_gets = 0                # gets that returned the page
        self.failed_gets = 0              # gets that did not
        self.puts = 0                     # puts with a valid pool
        self.invalidates = 0              # invalidate_page calls with a valid pool
        self.put_results: Counter = Counter()   # Xen's rc of each PUT_PAGE -> count

    # --- pools ------------------------------------------------------------------------------
    def init_fs(self, pagesize: int = PAGE_SIZE) -> int:
        """Linux: ``tmem_cleancache_init_fs`` — a private ephemeral pool for a mounted
        filesystem. Returns the pool id, or Xen's negative errno."""
        return self.ops.new_pool(0, PRIVATE_UUID, pagesize)

    def init_shared_fs(self, fs_uuid, pagesize: int = PAGE_SIZE) -> int:
        """Linux: ``tmem_cleancache_init_shared_fs`` — a shared ephemeral pool named by the
        filesystem's 16-byte uuid (see :func:`uuid_words`). Xen silently gives a private pool
        if the guest is not authorised for the uuid (``TMEM_AUTH``)."""
        return self.ops.new_pool(abi.TMEM_POOL_SHARED, uuid_words(fs_uuid), pagesize)

    def invalidate_fs(self, pool: int) -> None:
        """Linux: ``tmem_cleancache_flush_fs`` — unmount: DESTROY_POOL (skipped if pool < 0).
        A sharer's destroy leaves a shared pool to the other sharers."""
        if pool < 0:
            return
        self.ops.destroy_pool(pool)

    # --- pages ------------------------------------------------------------------------------
    def put_page(self, pool: int, key, index: int, page) -> None:
        """Linux: ``tmem_cleancache_put_page`` — offer a clean page to tmem. Skipped if
        ``pool < 0`` or ``index >= 2**32`` (tmem indices are u32); Xen's answer is ignored
        (recorded in ``put_results``)."""
        _check_index(index)
        oid = filekey_oid(key)
        if pool < 0:
            return
        self.puts += 1
        if index >= _U32:
            return
        self.put_results[self.ops.put_page(pool, oid, index, page)] += 1

    def get_page(self, pool: int, key, index: int, buf) -> int:
        """Linux: ``tmem_cleancache_get_page`` — 0 if tmem returned the page into ``buf``
        (Xen said 1), else -1 (absent, -EEMPTY, pool < 0, index >= 2**32, any error)."""
        _check_index(index)
        oid = filekey_oid(key)
        ret = -1
        if pool >= 0 and index < _U32:
            ret = 0 if self.ops.get_page(pool, oid, index, buf) == 1 else -1
        if ret == 0:
            self.succ_gets += 1
        else:
            self.failed_gets += 1
        return ret

    def invalidate_page(self, pool: int, key, index: int) -> None:
        """Linux: ``tmem_cleancache_flush_page`` — the page changed: FLUSH_PAGE."""
        _check_index(index)
        oid = filekey_oid(key)
        if pool < 0:
            return
        self.invalidates += 1
        if index >= _U32:
            return
        self.ops.flush_page(pool, oid, index)

    def invalidate_inode(self, pool: int, key) -> None:
        """Linux: ``tmem_cleancache_flush_inode`` — the file was truncated or deleted:
        FLUSH_OBJECT drops every page of it."""
        oid = filekey_oid(key)
        if pool < 0:
            return
        self.ops.flush_object(pool, oid)

    def counters(self) -> dict:
        """The debugfs counters, by name."""
        return {"succ_gets": self.succ_gets, "failed_gets": self.failed_gets,
                "puts": self.puts, "invalidates": self.invalidates}

    def __repr__(self):
        return f"<Cleancache dom{self.ops.domid} {self.counters()}>"
