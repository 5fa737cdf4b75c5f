"""Xen: ``tmemc_list*`` — statistics as two-letter ASCII counters (``xl tmem-list``).

The format is "program-parseable, not human-readable": one line per thing, starting with a
letter and ``=``, then comma-separated ``XX:value`` pairs. ``G=`` is the host, ``S=`` each global
shared pool, ``C=`` each client followed by its ``P=`` pools. The short form ends each line
after the first group; the long form (``use_long``) appends a second group after a comma.
Unknown tags are ignored by parsers, so the format could grow without breaking tools.

Xen built each line in a 1024-byte buffer and dropped any line that would not fit in the
caller's buffer (``sum + n >= len``). Classic Xen printed a ``T=`` timing line only when built
with ``TMEM_PERF``; this model keeps no cycle counts, so it prints none.
"""
from __future__ import annotations

import errno

from .. import abi

LINE_MAX = 1024
CLI_ALL = abi.TMEM_CLI_ID_NULL


def _pool_long(p) -> str:
    return (f"Pc:{p.pgp_count},Pm:{p.pgp_count_max},Oc:{p.obj_count},Om:{p.obj_count_max},"
            f"Nc:{p.objnode_count},Nm:{p.objnode_count_max},ps:{p.good_puts},pt:{p.puts},"
            f"pd:{p.dup_puts_flushed},pr:{p.dup_puts_replaced},px:{p.no_mem_puts},"
            f"gs:{p.found_gets},gt:{p.gets},fs:{p.flushs_found},ft:{p.flushs},"
            f"os:{p.flush_objs_found},ot:{p.flush_objs}\n")


def _uuid(p):
    return p.uuid if p.shared else (0, 0)


def global_line(host, use_long: bool) -> str:
    """The ``G=`` line."""
    h, m = host, host.mem
    s = (f"G=Tt:{h.total_tmem_ops},Te:{h.errored_tmem_ops},Cf:{h.failed_copies},"
         f"Af:{h.alloc_failed},Pf:{m.alloc_page_failed},Ta:{len(m.page_list)},"
         f"Lm:{h.low_on_memory},Et:{h.evicted_pgs},Ea:{h.evict_attempts},Rt:{h.relinq_pgs},"
         f"Ra:{h.relinq_attempts},Rx:{h.max_evicts_per_relinq},Fp:{h.total_flush_pool}")
    if not use_long:
        return s + "\n"
    return s + (f",Ec:{h.eph_count},Em:{h.global_eph_count_max},Oc:{h.global_obj_count},"
                f"Om:{h.global_obj_count_max},Nc:{h.global_rtree_node_count},"
                f"Nm:{h.global_rtree_node_count_max},Pc:{h.global_pgp_count},"
                f"Pm:{h.global_pgp_count_max},Fc:{h.global_page_count},"
                f"Fm:{h.global_page_count_max},Sc:{h.global_pcd_count},"
                f"Sm:{h.global_pcd_count_max},Ep:{h.tot_good_eph_puts},Gd:{h.deduped_puts},"
                f"Zt:{h.pcd_tot_tze_size},Gz:{h.pcd_tot_csize}\n")


def shared_line(index: int, p, use_long: bool) -> str:
    """An ``S=`` line for global shared pool ``index``."""
    u0, u1 = p.uuid
    s = f"S=SI:{index},PT:{p.type_code},U0:{u0:x},U1:{u1:x}"
    s += "".join(f",SC:{c.cli_id}" for c in p.share_list)
    return s + ("," + _pool_long(p) if use_long else "\n")


def client_line(c, use_long: bool) -> str:
    """A ``C=`` line."""
    s = (f"C=CI:{c.cli_id},ww:{c.weight},ca:{c.cap},co:{int(c.compress)},fr:{int(c.frozen)},"
         f"Tc:{c.total_cycles},Ge:{c.succ_eph_gets},Pp:{c.succ_pers_puts},Gp:{c.succ_pers_gets}")
    if not use_long:
        return s + "\n"
    return s + (f",Ec:{c.eph_count},Em:{c.eph_count_max},cp:{c.compressed_pages},"
                f"cb:{c.compressed_sum_size},cn:{c.compress_poor},cm:{c.compress_nomem}\n")


def pool_line(c, slot: int, p, use_long: bool) -> str:
    """A ``P=`` line for slot ``slot`` of client ``c``. Like Xen, ``PI`` is the pool's own id
    (for a shared pool: the owner's slot), not necessarily ``slot``."""
    u0, u1 = _uuid(p)
    s = f"P=CI:{c.cli_id},PI:{p.pool_id},PT:{p.type_code},U0:{u0:x},U1:{u1:x}"
    return s + ("," + _pool_long(p) if use_long else "\n")


def list_lines(host, cli_id: int, use_long: bool):
    """Every line LIST would produce, before the buffer limit; None for an unknown client."""
    lines = []
    if cli_id == CLI_ALL:
        lines.append(global_line(host, use_long))
        lines += [shared_line(i, p, use_long) for i, p in enumerate(host.shared_pools) if p]
        clients = list(host.clients.values())
    else:
        c = host.clients.get(cli_id)
        if c is None:
            return None
        clients = [c]
    for c in clients:
        lines.append(client_line(c, use_long))
        lines += [pool_line(c, i, p, use_long) for i, p in c.pool_slots()]
    return lines


def tmemc_list(host, cli_id: int = CLI_ALL, use_long: bool = True, buflen: int = 32768) -> str:
    """The LIST text for a buffer of ``buflen`` bytes (lines that do not fit are dropped).

    >>> from tmemref import Host
    >>> print(Host(pages=512).list_stats(long=False), end="")
    G=Tt:0,Te:0,Cf:0,Af:0,Pf:0,Ta:0,Lm:0,Et:0,Ea:0,Rt:0,Ra:0,Rx:0,Fp:0
    """
    lines = list_lines(host, cli_id, use_long)
    if lines is None:
        return ""
    out, total = [], 0
    for line in lines:
        n = len(line[:LINE_MAX - 1])
        if total + n >= buflen:
            continue
        out.append(line[:LINE_MAX - 1])
        total += n
    return "".join(out)


def tmemc_list_into(host, cli_id, buf, buflen, use_long) -> int:
    """TMEMC_LIST into a guest buffer: 0, -1 for an unknown client, -EFAULT for no buffer."""
    if host.clients.get(cli_id) is None and cli_id != CLI_ALL:
        return -1
    from .host import page_out_view
    m = page_out_view(buf, None)
    if m is None:                               # not a writable buffer of plain bytes
        return -errno.EFAULT
    with m:
        limit = min(buflen, m.nbytes)
        data = tmemc_list(host, cli_id, use_long, limit).encode("ascii")
        m[:len(data)] = data
        if len(data) < limit:
            m[len(data)] = 0
    return 0
