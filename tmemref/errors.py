"""Errors raised by tmemref itself (never by a guest's hypercall: those return Xen's codes)."""


class InvariantError(Exception):
    """A structure's ``check()`` found a broken invariant.

    Raised instead of a bare ``assert`` so that ``python -O`` still checks. The message names the
    structure and the number of the invariant from its docstring.
    """
