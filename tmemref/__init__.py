"""tmemref — a reference implementation of Xen's Transcendent Memory (tmem).

The public face: :class:`Host` (one machine: memory, domains, tmem), :class:`TmemOp` (the
hypercall argument), :mod:`abi` (Xen's public numbers) and :class:`InvariantError`.

>>> from tmemref import Host, TmemOp, abi
>>> host = Host(pages=1024)
>>> d = host.create_domain(1, pages=128, max_pages=256)
>>> pool = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
>>> host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, oid=(7, 0, 0), index=3,
...                           page=b"x" * 4096))
1
"""
from . import abi
from .abi import TmemOp
from .core.host import Host
from .errors import InvariantError

__all__ = ["Host", "TmemOp", "abi", "InvariantError"]
__version__ = "0.1.0"
