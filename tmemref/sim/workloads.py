"""Deterministic workloads for cleancache-style experiments: who reads which file page, in order.

A :class:`Workload` is a sequence of *references*. A reference is what tmem sees when a guest
kernel needs a page of a file that is not in its own page cache: a **get** of the handle
``(pool of that guest, oid = (file, 0, 0), index = page)``; on a miss the guest reads the disk
and, once it drops the page from its own (here: zero-sized) page cache, **puts** it. How the
replay turns references into hypercalls is :func:`tmemref.sim.experiments.replay`'s business;
a workload is only the numbers, as three parallel numpy arrays.

Generators (every one deterministic; randomness only from a numpy ``Generator`` built from an
explicit ``seed``):

======================  ===========================================================
:func:`zipf`            Zipf-popular pages of a file set: page of rank k is referenced
                        with probability proportional to ``1 / k**alpha``
:func:`scan`            sequential scans: every page of every file in order, again
                        and again (the pattern that defeats LRU)
:func:`interleave`      several workloads, taken in turns (``rates`` per turn)
:func:`concat`          several workloads, one after the other
:func:`swamp`           a light guest alone, then a heavy one joins at a higher rate
======================  ===========================================================

For several guests, :func:`zipf` and :func:`scan` take ``guests=n`` and build one stream per
guest (each over its own file set, Zipf seeds spawned from ``seed``), interleaved one
reference each in turn.

>>> w = scan(6, n_files=2, pages_per_file=2)
>>> [tuple(r) for r in w]
[(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 0, 0), (0, 0, 1)]
>>> z = zipf(1000, n_files=4, pages_per_file=8, alpha=1.0, seed=7)
>>> bool((z.page < 8).all()), z.distinct_pages() <= 32, z == zipf(1000, 4, 8, 1.0, seed=7)
(True, True, True)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Workload", "zipf", "scan", "interleave", "concat", "swamp", "zipf_probabilities"]


@dataclass(frozen=True, eq=False)
class Workload:
    """A sequence of page references, as three parallel ``int64`` arrays of equal length.

    Invariants (checked on construction, :meth:`check`):

    1. ``guest``, ``file`` and ``page`` are 1-d ``int64`` arrays of the same length;
    2. ``0 <= guest < guests``, ``0 <= file``, ``0 <= page < pages_per_file``.

    Two workloads are equal (``==``) when every field and every reference is equal.
    """
    name: str               # what it is, for legends ("zipf a=1.0", "scan", ...)
    guest: np.ndarray       # guest number (0 .. guests-1) of each reference; domain = 1 + guest
    file: np.ndarray        # file of the reference, in that guest's file set (oid word 0)
    page: np.ndarray        # page index in the file (the tmem index)
    guests: int = 1         # number of guests the workload spans
    pages_per_file: int = 1  # pages in each file

    def __post_init__(self):
        for field in ("guest", "file", "page"):
            object.__setattr__(self, field, np.ascontiguousarray(getattr(self, field),
                                                                 dtype=np.int64))
        self.check()

    def check(self) -> None:
        """Raise ``ValueError`` unless the invariants hold. O(n)."""
        g, f, p = self.guest, self.file, self.page
        if g.ndim != 1 or g.shape != f.shape or g.shape != p.shape:
            raise ValueError("guest, file and page must be 1-d arrays of one length")
        if len(g) and (g.min() < 0 or g.max() >= self.guests):
            raise ValueError(f"guest numbers must lie in [0, {self.guests})")
        if len(f) and f.min() < 0:
            raise ValueError("file numbers must be >= 0")
        if len(p) and (p.min() < 0 or p.max() >= self.pages_per_file):
            raise ValueError(f"page indexes must lie in [0, {self.pages_per_file})")

    def __len__(self) -> int:
        return len(self.guest)

    def __iter__(self):
        """``(guest, file, page)`` tuples of Python ints, in order."""
        return zip(self.guest.tolist(), self.file.tolist(), self.page.tolist())

    def __eq__(self, other) -> bool:
        if not isinstance(other, Workload):
            return NotImplemented
        return (self.name == other.name and self.guests == other.guests
                and self.pages_per_file == other.pages_per_file
                and np.array_equal(self.guest, other.guest)
                and np.array_equal(self.file, other.file)
                and np.array_equal(self.page, other.page))

    __hash__ = None

    def keys(self) -> np.ndarray:
        """One integer per reference naming the page across guests (guest, file, page). O(n)."""
        width = int(self.file.max()) + 1 if len(self) else 1
        return (self.guest * width + self.file) * self.pages_per_file + self.page

    def distinct_pages(self, guest: int | None = None) -> int:
        """How many different pages are referenced (by ``guest``, or by all). O(n log n)."""
        keys = self.keys()
        if guest is not None:
            keys = keys[self.guest == guest]
        return int(np.unique(keys).size)

    def __getitem__(self, sl: slice) -> "Workload":
        """A contiguous part of the workload (a slice), same name and shape."""
        if not isinstance(sl, slice):
            raise TypeError("a Workload is sliced, not indexed (iterate for references)")
        return Workload(self.name, self.guest[sl], self.file[sl], self.page[sl], self.guests,
                        self.pages_per_file)


def zipf_probabilities(n: int, alpha: float) -> np.ndarray:
    """Bounded Zipf law over ranks 1..n: ``p[k-1] = k**-alpha / sum_j j**-alpha``.

    >>> p = zipf_probabilities(4, 1.0)
    >>> [round(float(x), 3) for x in p]
    [0.48, 0.24, 0.16, 0.12]
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if alpha < 0:
        raise ValueError("alpha must be >= 0")
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(alpha)
    return w / w.sum()


def _zipf_one(n_refs, n_files, pages_per_file, alpha, rng, guest, guests) -> Workload:
    n = n_files * pages_per_file
    rank_to_page = rng.permutation(n)            # popular pages are scattered over files
    ranks = rng.choice(n, size=n_refs, p=zipf_probabilities(n, alpha))
    pages = rank_to_page[ranks]
    return Workload(f"zipf a={alpha:g}", np.full(n_refs, guest), pages // pages_per_file,
                    pages % pages_per_file, guests, pages_per_file)


def zipf(n_refs: int, n_files: int, pages_per_file: int, alpha: float = 1.0, *, seed: int = 0,
         guests: int = 1) -> Workload:
    """``n_refs`` references per guest to pages of ``n_files`` files of ``pages_per_file`` pages,
    Zipf-popular: the page of popularity rank k (1 = most popular) is referenced with
    probability proportional to ``1 / k**alpha``; which page has which rank is a random
    permutation. Each guest has its own file set and its own stream (seeds spawned from
    ``seed``); guests take turns, one reference each. O(n_refs * guests).

    >>> w = zipf(4, 2, 4, seed=1, guests=2)
    >>> w.guest.tolist(), len(w)
    ([0, 1, 0, 1, 0, 1, 0, 1], 8)
    """
    if n_refs < 0 or n_files < 1 or pages_per_file < 1 or guests < 1:
        raise ValueError("need n_refs >= 0 and n_files, pages_per_file, guests >= 1")
    seqs = np.random.SeedSequence(seed).spawn(guests)
    parts = [_zipf_one(n_refs, n_files, pages_per_file, alpha, np.random.default_rng(s), g,
                       guests) for g, s in enumerate(seqs)]
    return parts[0] if guests == 1 else interleave(parts)


def scan(n_refs: int, n_files: int, pages_per_file: int, *, guests: int = 1,
         start: int = 0) -> Workload:
    """``n_refs`` references per guest that read every page of every file in order — file 0
    pages 0..P-1, file 1, ... — and start again at the end (a loop of sequential scans over a
    file set of ``n_files * pages_per_file`` pages). ``start`` skips that many references of
    the loop first. Guests take turns, one reference each. O(n_refs * guests).

    >>> scan(5, 1, 3, start=2).page.tolist()
    [2, 0, 1, 2, 0]
    """
    if n_refs < 0 or n_files < 1 or pages_per_file < 1 or guests < 1 or start < 0:
        raise ValueError("need n_refs, start >= 0 and n_files, pages_per_file, guests >= 1")
    pos = (np.arange(n_refs, dtype=np.int64) + start) % (n_files * pages_per_file)
    parts = [Workload("scan", np.full(n_refs, g), pos // pages_per_file, pos % pages_per_file,
                      guests, pages_per_file) for g in range(guests)]
    return parts[0] if guests == 1 else interleave(parts)


def interleave(workloads, rates=None, name: str | None = None) -> Workload:
    """Merge workloads by turns: in each turn workload i contributes its next ``rates[i]``
    references (default 1 each), until every one is used up (a finished one drops out).
    Guest numbers are kept; ``guests`` is the largest of theirs; all must have the same
    ``pages_per_file``. O(total references).

    >>> a, b = scan(3, 1, 3), scan(3, 1, 3, guests=2)[1::2]
    >>> interleave([a, b], rates=[2, 1]).guest.tolist()
    [0, 0, 1, 0, 1, 1]
    """
    ws = list(workloads)
    if not ws:
        raise ValueError("nothing to interleave")
    rates = [1] * len(ws) if rates is None else [int(r) for r in rates]
    if len(rates) != len(ws) or min(rates) < 1:
        raise ValueError("one rate >= 1 per workload")
    ppf = {w.pages_per_file for w in ws}
    if len(ppf) != 1:
        raise ValueError("workloads must have the same pages_per_file")
    # reference j of workload i goes in turn j // rates[i], after workloads 0..i-1 of that turn
    turn = np.concatenate([np.arange(len(w)) // r for w, r in zip(ws, rates)])
    which = np.concatenate([np.full(len(w), i) for i, w in enumerate(ws)])
    within = np.concatenate([np.arange(len(w)) % r for w, r in zip(ws, rates)])
    order = np.lexsort((within, which, turn))
    cat = lambda f: np.concatenate([getattr(w, f) for w in ws])[order]  # noqa: E731
    if name is None:
        names = sorted({w.name for w in ws})
        name = names[0] if len(names) == 1 else " + ".join(names)
    return Workload(name, cat("guest"), cat("file"), cat("page"), max(w.guests for w in ws),
                    ppf.pop())


def concat(workloads, name: str | None = None) -> Workload:
    """The workloads one after the other. Same rules as :func:`interleave`. O(total).

    >>> concat([scan(2, 1, 4), scan(2, 1, 4, start=2)]).page.tolist()
    [0, 1, 2, 3]
    """
    return _concat(list(workloads), name)


def _concat(ws, name):
    if not ws:
        raise ValueError("nothing to concatenate")
    ppf = {w.pages_per_file for w in ws}
    if len(ppf) != 1:
        raise ValueError("workloads must have the same pages_per_file")
    if name is None:
        names = sorted({w.name for w in ws})
        name = names[0] if len(names) == 1 else " + ".join(names)
    cat = lambda f: np.concatenate([getattr(w, f) for w in ws])  # noqa: E731
    return Workload(name, cat("guest"), cat("file"), cat("page"), max(w.guests for w in ws),
                    ppf.pop())


def swamp(n_refs: int, *, head_start: int, first: str = "heavy", rate: int = 3,
          light_files: int = 24, heavy_files: int = 96, pages_per_file: int = 16,
          alpha: float = 0.8, seed: int = 0) -> Workload:
    """The denial of service that weights are for (tmem-internals.html, "Weights and caps": "a
    client that uses tmem at a very high frequency can quickly swamp tmem so that it provides
    little benefit to a client that uses it less frequently").

    Guest 0 is the *heavy* guest (domain 1): Zipf-popular pages of ``heavy_files`` files, read
    ``rate`` times as often as guest 1, the *light* guest (domain 2), reads its own smaller
    set of ``light_files`` files. The ``first`` guest (``"heavy"`` or ``"light"``) runs alone
    for ``head_start`` references; then both run, the light guest making ``n_refs``
    references and the heavy one ``rate`` for each of them. Both streams are Zipf with
    ``alpha``, seeds spawned from ``seed``. O(head_start + n_refs * (1 + rate)).

    >>> w = swamp(3, head_start=2, rate=2, light_files=1, heavy_files=1, pages_per_file=4)
    >>> w.guest.tolist()
    [0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    >>> swamp(2, head_start=2, first="light", rate=2, light_files=1, heavy_files=1,
    ...       pages_per_file=4).guest.tolist()
    [1, 1, 0, 0, 1, 0, 0, 1]
    """
    if head_start < 0 or n_refs < 0 or rate < 1:
        raise ValueError("need head_start, n_refs >= 0 and rate >= 1")
    if first not in ("heavy", "light"):
        raise ValueError("first must be 'heavy' or 'light'")
    s_heavy, s_light = np.random.SeedSequence(seed).spawn(2)
    h_solo = head_start if first == "heavy" else 0
    l_solo = head_start - h_solo
    heavy = _zipf_one(h_solo + n_refs * rate, heavy_files, pages_per_file, alpha,
                      np.random.default_rng(s_heavy), 0, 2)
    light = _zipf_one(l_solo + n_refs, light_files, pages_per_file, alpha,
                      np.random.default_rng(s_light), 1, 2)
    solo = heavy[:h_solo] if first == "heavy" else light[:l_solo]
    both = interleave([heavy[h_solo:], light[l_solo:]], rates=[rate, 1])
    return _concat([solo, both], f"swamp, {first} first")
