"""Xen: libxc's tmem save and restore (``tools/libxc/xc_tmem.c``, Xen <= 4.5) — the toolstack's
part of ``xl save``, ``xl restore`` and ``xl migrate``.

Everything here is done through hypercalls from domain 0, exactly those a toolstack makes
(``TMEM_CONTROL`` save/restore sub-ops and ``TMEM_RESTORE_NEW``); nothing reaches into the
host's structures.

The stream (Xen's "classic" format, written inside the legacy domain save image; every
integer little-endian, as on x86)::

    i32  -5                      marker XC_SAVE_ID_TMEM
    u32  version                 TMEM_SPEC_VERSION (1)
    u32  max_pools               16
    u32  -1
    u32  client flags            TMEM_CLIENT_COMPRESS 1 | TMEM_CLIENT_FROZEN 2
    u32  weight, u32 cap         (a value of -1 is saved as -2)
    u32  -1
    for each pool, in id order:
        u32 pool_id, u32 flags, u32 n_pages, u64 uuid[2]
        up to n_pages times:     u64 oid[3], u32 index, 4096 bytes of page
        u64 oid[3] = -1, -1, -1  only if the pool ran out of pages before n_pages
    u32  -1                      end of the pools

and, for a live migration, once the guest is paused::

    i32  -6                      marker XC_SAVE_ID_TMEM_EXTRA
    for each page invalidated during the live phase: u32 pool_id, u64 oid[3], u32 index
    u32  -1

Ephemeral pools are described (so the target recreates them) with ``n_pages`` 0: their pages
may vanish at any time, so they are not carried.

Bad streams raise :class:`StreamError`, naming the byte offset and what was expected there; a
restore reads and checks the whole chunk before its first hypercall, so a malformed stream
changes nothing on the target. A hypercall the target refuses (a client that exists already,
a domain at its maximum memory, ...) also raises :class:`StreamError`, with Xen's return
value in ``rc``; what was restored before stays, consistent (``host.check()`` passes).
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from . import abi
from .abi import TmemOp
from .core.save import HANDLE
from .guest.ops import Call

__all__ = ["save", "save_extra", "save_done", "restore", "restore_extra", "migrate",
           "parse_stream", "field_rows", "HypercallLog", "StreamError", "Field", "SavedClient",
           "SavedPool", "Migration", "XC_SAVE_ID_TMEM", "XC_SAVE_ID_TMEM_EXTRA"]

#: Chunk markers of the legacy save stream (Xen: ``XC_SAVE_ID_TMEM``, ``_TMEM_EXTRA``).
XC_SAVE_ID_TMEM = -5
XC_SAVE_ID_TMEM_EXTRA = -6
DOM0 = 0
PAGE = abi.PAGE_SIZE
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
END = U32                         # the -1 terminators, as u32
TERMINATOR_OID = (U64, U64, U64)  # end of a pool's pages


class StreamError(ValueError):
    """A tmem stream that cannot be read or restored.

    ``offset`` is the byte offset (from where the reader started) of the field at fault,
    ``expected`` says what should have been there, ``found`` what was, and ``rc`` is Xen's
    return value when a hypercall refused the field (else None).
    """

    def __init__(self, offset: int, expected: str, found: str, rc: Optional[int] = None):
        self.offset, self.expected, self.found, self.rc = offset, expected, found, rc
        super().__init__(f"tmem stream, byte {offset}: expected {expected}, found {found}")


@dataclass(frozen=True)
class Field:
    """One field of a stream as read: where it is, how long, what it is called, its value."""
    offset: int
    size: int
    name: str
    value: object


@dataclass
class SavedPool:
    """A pool as a stream describes it. ``pages``: ``(oid, index, data, offset)``."""
    pool_id: int
    flags: int
    n_pages: int
    uuid: Tuple[int, int]
    offset: int
    pages: List[tuple] = field(default_factory=list)


@dataclass
class SavedClient:
    """A client as a stream describes it (the ``-5`` chunk)."""
    version: int
    max_pools: int
    flags: int
    weight: int
    cap: int
    offset: int                               # of the client flags
    pools: List[SavedPool] = field(default_factory=list)


# --- writing ------------------------------------------------------------------------------------

def _ctl(host, subop: int, domid: int, *, pool_id: int = 0, arg1: int = 0, arg2: int = 0,
         oid=(0, 0, 0), buf=None) -> int:
    """libxc's ``xc_tmem_control``: one TMEM_CONTROL hypercall from domain 0."""
    return host.do_tmem_op(DOM0, TmemOp(cmd=abi.TMEM_CONTROL, subop=subop, cli_id=domid,
                                        pool_id=pool_id, arg1=arg1, arg2=arg2, oid=oid,
                                        buf=buf))


class _Writer:
    def __init__(self, stream):
        self.stream = stream
        self.written = 0

    def put(self, fmt: str, *values) -> None:
        data = struct.pack("<" + fmt, *values)
        self.stream.write(data)
        self.written += len(data)

    def raw(self, data) -> None:
        self.stream.write(data)
        self.written += len(data)


def save(host, domid: int, stream, *, live: bool = False) -> int:
    """Xen: ``xc_tmem_save`` — write domain ``domid``'s tmem (the ``-5`` chunk) to the binary
    file object ``stream``. 1 if saved; 0 if there is nothing to save (no client, or no
    pool), and then nothing is written.

    ``SAVE_BEGIN`` freezes the client (and with ``live`` marks it migrating, so pages freed
    from now on are logged for :func:`save_extra`). As in ``xl save``, the client stays
    frozen afterwards — the domain is about to be destroyed; :func:`save_done` (``SAVE_END``)
    ends a live save and thaws it. ``ValueError`` if ``domid`` is not a domain of ``host``;
    :class:`StreamError` if a sub-op fails. O(pages saved)."""
    _domain(host, domid)
    if _ctl(host, abi.TMEMC_SAVE_BEGIN, domid, arg1=int(bool(live))) <= 0:
        return 0
    w = _Writer(stream)
    w.put("i", XC_SAVE_ID_TMEM)
    version = _ctl(host, abi.TMEMC_SAVE_GET_VERSION, 0)
    max_pools = _ctl(host, abi.TMEMC_SAVE_GET_MAXPOOLS, 0)
    w.put("II", version & U32, max_pools & U32)
    if version == -1 or max_pools == -1:
        raise StreamError(w.written - 8, "the version and the number of pools",
                          f"{version}, {max_pools}", -1)
    w.put("I", END)
    info = [_ctl(host, sub, domid) for sub in (abi.TMEMC_SAVE_GET_CLIENT_FLAGS,
                                               abi.TMEMC_SAVE_GET_CLIENT_WEIGHT,
                                               abi.TMEMC_SAVE_GET_CLIENT_CAP)]
    w.put("III", *(v & U32 for v in info))
    if -1 in info:
        raise StreamError(w.written - 12, "client flags, weight and cap",
                          f"{info} (no client {domid})", -1)
    w.put("I", END)
    buf = bytearray(PAGE + HANDLE.size)
    uuid = bytearray(16)
    for pool_id in range(max_pools):
        flags = _ctl(host, abi.TMEMC_SAVE_GET_POOL_FLAGS, domid, pool_id=pool_id)
        if flags == -1:
            continue
        n_pages = _ctl(host, abi.TMEMC_SAVE_GET_POOL_NPAGES, domid, pool_id=pool_id)
        if not flags & abi.TMEM_POOL_PERSIST:
            n_pages = 0
        _ctl(host, abi.TMEMC_SAVE_GET_POOL_UUID, domid, pool_id=pool_id, arg1=16, buf=uuid)
        w.put("III", pool_id, flags & U32, n_pages & U32)
        w.raw(bytes(uuid))
        for _ in range(n_pages):
            rc = _ctl(host, abi.TMEMC_SAVE_GET_NEXT_PAGE, domid, pool_id=pool_id,
                      arg1=len(buf), buf=buf)
            if rc > 0:
                _, index, *oid = HANDLE.unpack_from(buf)
                w.put("3QI", *oid, index)
                w.raw(bytes(buf[HANDLE.size:]))
            elif rc < 0:                  # the pool has no more pages: terminator
                w.put("3Q", *TERMINATOR_OID)
                break
    w.put("I", END)
    return 1


def save_extra(host, domid: int, stream) -> int:
    """Xen: ``xc_tmem_save_extra`` — once a live-migrating guest is paused, write the ``-6``
    chunk: the handle of every persistent page freed since ``save(live=True)``
    (``SAVE_GET_NEXT_INV``), then -1. Returns how many. O(invalidations)."""
    _domain(host, domid)
    w = _Writer(stream)
    w.put("i", XC_SAVE_ID_TMEM_EXTRA)
    buf = bytearray(HANDLE.size)
    n = 0
    while _ctl(host, abi.TMEMC_SAVE_GET_NEXT_INV, domid, arg1=len(buf), buf=buf) > 0:
        pool_id, index, *oid = HANDLE.unpack(buf)
        w.put("I3QI", pool_id, *oid, index)
        n += 1
    w.put("I", END)
    return n


def save_done(host, domid: int) -> int:
    """Xen: ``xc_tmem_save_done`` — ``SAVE_END`` after a live save: the client stops
    migrating, its log is freed and it is thawed (unless it was frozen before). 0; -1 if
    it has no client. O(1)."""
    _domain(host, domid)
    return _ctl(host, abi.TMEMC_SAVE_END, domid)


# --- reading ------------------------------------------------------------------------------------

class _Reader:
    """Reads little-endian fields from a binary file object, recording each as a
    :class:`Field`; a short read raises :class:`StreamError`."""

    def __init__(self, stream, offset: int = 0):
        self.stream = stream
        self.offset = offset
        self.fields: List[Field] = []

    def take(self, fmt: str, name: str):
        size = struct.calcsize("<" + fmt)
        data = self.stream.read(size)
        if data is None or len(data) != size:
            got = 0 if not data else len(data)
            raise StreamError(self.offset, f"{name} ({size} bytes)",
                              f"the end of the stream after {got} bytes")
        values = struct.unpack("<" + fmt, data) if fmt != f"{PAGE}s" else (data,)
        value = values[0] if len(values) == 1 else values
        self.fields.append(Field(self.offset, size, name, value))
        self.offset += size
        return value

    def expect(self, fmt: str, name: str, want, what: str):
        at = self.offset
        value = self.take(fmt, name)
        if value != want:
            raise StreamError(at, what, _show(value))
        return value


def _show(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_show, value)) + ")"
    if isinstance(value, int) and value >= 0x80000000:
        return f"{value:#x}"
    return str(value)


def _read_chunk(r: _Reader) -> SavedClient:
    """The ``-5`` chunk, checked field by field."""
    r.expect("i", "marker", XC_SAVE_ID_TMEM, "the marker -5 (XC_SAVE_ID_TMEM)")
    version = r.expect("I", "version", abi.TMEM_SPEC_VERSION,
                       f"version {abi.TMEM_SPEC_VERSION} (TMEM_SPEC_VERSION)")
    max_pools = r.expect("I", "max_pools", abi.MAX_POOLS_PER_DOMAIN,
                         f"max_pools {abi.MAX_POOLS_PER_DOMAIN}")
    r.expect("I", "end of header", END, "the separator -1")
    at = r.offset
    flags = r.take("I", "client flags")
    if flags & ~(abi.TMEM_CLIENT_COMPRESS | abi.TMEM_CLIENT_FROZEN):
        raise StreamError(at, "client flags of bits COMPRESS (1) and FROZEN (2) only",
                          _show(flags))
    client = SavedClient(version, max_pools, flags, r.take("I", "weight"),
                         r.take("I", "cap"), at)
    r.expect("I", "end of client", END, "the separator -1")
    seen = set()
    while True:
        at = r.offset
        pool_id = r.take("I", "pool_id")
        if pool_id == END:
            return client
        if pool_id >= max_pools or pool_id in seen:
            raise StreamError(at, f"a pool id below {max_pools} not seen before, or the "
                                  "terminator -1", _show(pool_id))
        seen.add(pool_id)
        flags_at = r.offset
        flags = r.take("I", "pool flags")
        n_at = r.offset
        n_pages = r.take("I", "n_pages")
        if not flags & abi.TMEM_POOL_PERSIST and n_pages:
            raise StreamError(n_at, "n_pages 0 for an ephemeral pool", str(n_pages))
        if (flags >> abi.TMEM_POOL_VERSION_SHIFT) & abi.TMEM_POOL_VERSION_MASK \
                != abi.TMEM_SPEC_VERSION:
            raise StreamError(flags_at, f"pool flags of version {abi.TMEM_SPEC_VERSION}",
                              _show(flags))
        pool = SavedPool(pool_id, flags, n_pages, r.take("2Q", "uuid"), at)
        client.pools.append(pool)
        for _ in range(n_pages):
            page_at = r.offset
            oid = r.take("3Q", "oid")
            if oid == TERMINATOR_OID:
                break
            index = r.take("I", "index")
            pool.pages.append((oid, index, r.take(f"{PAGE}s", "page"), page_at))


def _read_extra(r: _Reader) -> List[tuple]:
    """The ``-6`` chunk: ``[(pool_id, oid, index, offset), ...]``."""
    r.expect("i", "marker", XC_SAVE_ID_TMEM_EXTRA, "the marker -6 (XC_SAVE_ID_TMEM_EXTRA)")
    out = []
    while True:
        at = r.offset
        pool_id = r.take("I", "pool_id")
        if pool_id == END:
            return out
        if pool_id >= abi.MAX_POOLS_PER_DOMAIN:
            raise StreamError(at, "a pool id below 16 or the terminator -1", _show(pool_id))
        out.append((pool_id, r.take("3Q", "oid"), r.take("I", "index"), at))


def parse_stream(data: bytes) -> List[Field]:
    """Every field of a stream of tmem chunks (``-5``, then ``-6`` if present), in order,
    with its offset, size, name and value — what the book draws. :class:`StreamError` if
    malformed. O(len(data))."""
    r = _Reader(io.BytesIO(data))
    while r.offset < len(data):
        marker = struct.unpack_from("<i", data, r.offset)[0] if len(data) - r.offset >= 4 \
            else None
        if marker == XC_SAVE_ID_TMEM_EXTRA:
            _read_extra(r)
        else:
            _read_chunk(r)
    return r.fields


def field_rows(fields: List[Field]) -> List[tuple]:
    """Display rows ``(offset, size, part, field, value)`` of :func:`parse_stream`'s fields:
    ``part`` says which part of the stream a field belongs to (header, client, pool *n*,
    page, end, invalidations); a page shows its first bytes. O(fields)."""
    rows, part = [], "header"
    for f in fields:
        value = f.value
        if f.name == "marker":
            part = "header" if value == XC_SAVE_ID_TMEM else "invalidations (-6)"
        elif f.name == "client flags":
            part = "client"
        elif f.name == "pool_id" and not part.startswith("invalidations"):
            part = "end of pools" if value == END else f"pool {value}"
        if f.name == "page":
            text = value[:8].hex(" ") + " … (4096 bytes)"
        elif f.name == "oid" and value == TERMINATOR_OID:
            text = "-1, -1, -1 (no more pages)"
        elif isinstance(value, int) and value == END:
            text = "-1"
        elif isinstance(value, int) and f.name in ("pool flags", "client flags"):
            text = hex(value)
        else:
            text = _show(value)
        rows.append((f.offset, f.size, part, f.name, text))
    return rows


class HypercallLog:
    """A host as a toolstack sees it: every attribute is the host's, and each
    ``do_tmem_op`` is recorded in ``calls`` (:class:`tmemref.guest.ops.Call`), so the
    hypercalls :func:`save` or :func:`restore` make can be listed. O(1) per call."""

    def __init__(self, host):
        self.host = host
        self.calls: List[Call] = []

    def __getattr__(self, name):
        return getattr(self.host, name)

    def do_tmem_op(self, domid, op):
        rc = self.host.do_tmem_op(domid, op)
        self.calls.append(Call(domid, op, rc))
        return rc


def _start(stream) -> int:
    try:
        return stream.tell()
    except (AttributeError, OSError, ValueError):
        return 0


def _domain(host, domid):
    d = host.mem.domains.get(domid) if type(domid) is int else None
    if d is None:
        raise ValueError(f"no domain {domid!r} on this host")
    return d


def restore(host, domid: int, stream) -> int:
    """Xen: ``xc_tmem_restore`` — read a ``-5`` chunk from ``stream`` and rebuild it as the
    tmem of domain ``domid`` of ``host``: ``RESTORE_BEGIN`` (creates the client),
    ``SET_COMPRESS``, ``SET_WEIGHT``, ``SET_CAP``, then per pool ``TMEM_RESTORE_NEW`` and a
    ``RESTORE_PUT_PAGE`` per page, billed to the domain; a client saved frozen is frozen
    last. Returns the pages restored.

    The whole chunk is read and checked first (:class:`StreamError` changes nothing). libxc
    froze the client before putting the pages (so a client saved frozen could not be
    restored) and set weight and cap to 0; here they come from the stream.
    ``ValueError`` if ``domid`` is not a domain of ``host``. O(pages)."""
    _domain(host, domid)
    saved = _read_chunk(_Reader(stream, _start(stream)))
    rc = _ctl(host, abi.TMEMC_RESTORE_BEGIN, domid)
    if rc < 0:
        raise StreamError(saved.offset, f"a domain {domid} without a tmem client (RESTORE_BEGIN)",
                          f"{abi.rc_name(rc)}: it has one already", rc)
    if saved.flags & abi.TMEM_CLIENT_COMPRESS:
        _must(_ctl(host, abi.TMEMC_SET_COMPRESS, domid, arg1=1), saved.offset, "SET_COMPRESS")
    for sub, value, at in ((abi.TMEMC_SET_WEIGHT, saved.weight, saved.offset + 4),
                           (abi.TMEMC_SET_CAP, saved.cap, saved.offset + 8)):
        value = U32 if value == U32 - 1 else value        # -1 was saved as -2
        _must(_ctl(host, sub, domid, arg1=value), at, abi.SUBOP_NAMES[sub][6:])
    n = 0
    for pool in saved.pools:
        rc = host.do_tmem_op(DOM0, TmemOp(cmd=abi.TMEM_RESTORE_NEW, pool_id=pool.pool_id,
                                          arg1=domid, flags=pool.flags, uuid=pool.uuid))
        if rc != pool.pool_id:
            raise StreamError(pool.offset, f"pool {pool.pool_id} recreated (TMEM_RESTORE_NEW)",
                              abi.rc_name(rc), rc)
        for oid, index, data, at in pool.pages:
            rc = _ctl(host, abi.TMEMC_RESTORE_PUT_PAGE, domid, pool_id=pool.pool_id, oid=oid,
                      arg1=PAGE, arg2=index, buf=data)
            if rc <= 0:
                raise StreamError(at, f"page {oid}[{index}] of pool {pool.pool_id} put "
                                      "(RESTORE_PUT_PAGE)", abi.rc_name(rc), rc)
            n += 1
    if saved.flags & abi.TMEM_CLIENT_FROZEN:
        _must(_ctl(host, abi.TMEMC_FREEZE, domid), saved.offset, "FREEZE")
    return n


def _must(rc: int, at: int, what: str) -> None:
    if rc < 0:
        raise StreamError(at, f"{what} to succeed", abi.rc_name(rc), rc)


def restore_extra(host, domid: int, stream) -> int:
    """Xen: ``xc_tmem_restore_extra`` — read a ``-6`` chunk and flush each page it names on
    the target (``RESTORE_FLUSH_PAGE``). Returns how many. The chunk is read and checked
    before the first flush. O(invalidations)."""
    _domain(host, domid)
    handles = _read_extra(_Reader(stream, _start(stream)))
    for pool_id, oid, index, at in handles:
        rc = _ctl(host, abi.TMEMC_RESTORE_FLUSH_PAGE, domid, pool_id=pool_id, oid=oid,
                  arg2=index)
        if rc <= 0:
            raise StreamError(at, f"page {oid}[{index}] of pool {pool_id} flushed "
                                  "(RESTORE_FLUSH_PAGE)", abi.rc_name(rc), rc)
    return len(handles)


# --- live migration -----------------------------------------------------------------------------

@dataclass
class Migration:
    """What :func:`migrate` did: the persistent pages sent and restored in the live phase,
    the invalidations sent once the guest was paused, and the whole stream."""
    pages: int
    invalidated: int
    stream: bytes


def migrate(src, dst, domid: int, *, during: Optional[Callable] = None) -> Migration:
    """Live-migrate domain ``domid``'s tmem from host ``src`` to host ``dst``, as
    ``xl migrate`` drove libxc (Xen <= 4.5):

    1. live phase: ``save(live=True)`` freezes the source client (new puts fail) and streams
       its persistent pages, which the target restores; ``during(src)``, if given, is then
       called — the guest still runs: it may flush pages and make duplicate puts, which are
       refused and so flush too; each such page is logged;
    2. the guest is paused: ``save_extra`` sends the log and the target flushes those pages;
    3. ``save_done`` (``SAVE_END``) ends the migration on the source.

    Afterwards the target holds exactly the source's persistent pages (ephemeral pages are
    not carried). Creates domain ``domid`` on ``dst`` (same memory and maximum as on ``src``)
    if it is not there. On any failure the source migration is ended (``SAVE_END``: the
    source client is thawed, nothing on it is lost) and the error re-raised. The source
    domain is left to the caller (``xl`` destroys it once the target runs).
    O(pages + invalidations)."""
    d = _domain(src, domid)
    if domid not in dst.mem.domains:
        dst.create_domain(domid, pages=len(d.own_frames), max_pages=d.max_pages)
    out, extra = io.BytesIO(), io.BytesIO()
    begun = True
    try:
        if not save(src, domid, out, live=True):
            begun = False                    # SAVE_BEGIN found nothing to save
            return Migration(0, 0, b"")
        pages = restore(dst, domid, io.BytesIO(out.getvalue()))
        if during is not None:
            during(src)
        save_extra(src, domid, extra)
        invalidated = restore_extra(dst, domid, io.BytesIO(extra.getvalue()))
    finally:
        if begun:
            save_done(src, domid)
    return Migration(pages, invalidated, out.getvalue() + extra.getvalue())
