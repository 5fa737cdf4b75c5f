"""Xen: ``xl tmem-*`` — the administrator's commands, implemented once in :mod:`tmemref.guest.xl`.

This module re-exports them (``from tmemref import xl; xl.tmem_list(host)``) and runs them
from the shell: ``python -m tmemref.xl tmem-list -a`` is ``tmemref xl tmem-list -a``.

>>> from tmemref import Host
>>> print(tmem_list(Host(pages=1024)), end="")
G=Tt:1,Te:0,Cf:0,Af:0,Pf:0,Ta:0,Lm:0,Et:0,Ea:0,Rt:0,Ra:0,Rx:0,Fp:0
<BLANKLINE>
"""
import sys

from .guest.xl import *  # noqa: F401,F403 — the one implementation
from .guest.xl import __all__  # noqa: F401

if __name__ == "__main__":
    from .cli import main
    sys.exit(main(["xl", *sys.argv[1:]]))
