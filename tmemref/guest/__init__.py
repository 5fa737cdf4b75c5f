"""The Linux side of tmem: thin Pythonic layers over :meth:`Host.do_tmem_op`.

Each module mirrors one piece of Linux (or of the dom0 toolstack) and makes exactly the
hypercalls that piece made, so a reader can watch a frontend's call become a handle:

* :mod:`.ops` — :class:`TmemOps`, the raw hypercalls of ``drivers/xen/tmem.c`` (``xen_tmem_*``),
  with an optional trace of every call;
* :mod:`.cleancache` — :class:`Cleancache`: clean page cache in an ephemeral pool per
  filesystem (oid = the file key, index = the page index);
* :mod:`.frontswap` — :class:`Frontswap`: swap pages in one persistent pool, swizzled over 16
  objects per swap device;
* :mod:`.xl` — :class:`Xl`: the administrator's ``xl tmem-*`` commands from dom0;
* :mod:`.scenarios` — small live experiments on the ABI that the book renders.

>>> from tmemref import Host
>>> from tmemref.guest import Frontswap
>>> host = Host(pages=1024)
>>> _ = host.create_domain(1, pages=64, max_pages=256)
>>> fs = Frontswap(host, 1, trace=True)
>>> _ = fs.init(0)
>>> fs.store(1, 0x123, b"s" * 4096)
0
>>> print(fs.ops.trace[-1])
dom1 PUT_PAGE pool=0 oid=(19, 0, 0) index=18 -> 1
"""
from .cleancache import Cleancache, filekey_oid, uuid_words
from .frontswap import Frontswap, swizzle, unswizzle
from .ops import Call, TmemOps, describe, linux_pool_flags
from .xl import Xl, XlError, uuid_parse

__all__ = ["Call", "Cleancache", "Frontswap", "TmemOps", "Xl", "XlError", "describe",
           "filekey_oid", "linux_pool_flags", "swizzle", "unswizzle", "uuid_parse",
           "uuid_words"]
