"""Tests for tmemref.host.tlsf: each named case with exact addresses, bad input, locking, a
corruption per invariant, a Hypothesis state machine against a plain model of free space, and
the picture.

Addresses are worked by hand from Xen's x86-64 layout: a region is frame ``f`` at ``f << 12``;
its first header is at offset 0, so the first payload is at offset 16; a fresh region is one
free block of 4064 bytes followed by the sentinel header at offset 4080.
"""
from __future__ import annotations

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

from tmemref.errors import InvariantError
from tmemref.host import locks
from tmemref.host.locks import RANK_HEAP, RANK_PAGE_LIST, RANK_XMEM, SpinLock, held_locks
from tmemref.host.tlsf import (BHDR_OVERHEAD, FL_COUNT, LARGEST_FIT, MAX_ALLOC, MIN_BLOCK_SIZE,
                               NO_BLOCK, Tlsf, class_range, mapping_insert, mapping_search)

PAGE = 4096


class Frames:
    """The host side of a pool: a stack of frames, a switch to refuse, a record of calls."""

    def __init__(self, frames=(9, 5), lock=None):
        self.free = list(frames)          # popped from the end: 5 first, then 9
        self.refuse = False
        self.got, self.put = [], []
        self.lock = lock                  # the pool's lock, to check it is not held here
        self.heap_lock = SpinLock("heap_lock", RANK_HEAP)
        self.list_lock = SpinLock("tmem_page_list_lock", RANK_PAGE_LIST)

    def get(self):
        if self.lock is not None:
            assert self.lock not in held_locks() and not self.lock.held
            with self.heap_lock:           # a lower rank: only legal with the pool lock dropped
                pass
        if self.refuse or not self.free:
            return None
        f = self.free.pop()
        self.got.append(f)
        return f

    def give(self, f):
        if self.lock is not None:
            assert held_locks() == [self.lock]
            with self.list_lock:           # a higher rank: fine under the pool lock
                pass
        assert f not in self.free
        self.free.append(f)
        self.put.append(f)


def pool(frames=None, lock=None):
    frames = frames or Frames(lock=lock)
    return Tlsf("t", frames.get, frames.give, lock=lock), frames


def blocks(t, f):
    return t.describe()["regions"][f]


def lists(t):
    return {(fl, sl): addrs for fl, sl, _, _, addrs in t.describe()["free_lists"]}


# --- constants and mappings -------------------------------------------------------------------

def test_constants_are_xens_x86_64_layout():
    assert (BHDR_OVERHEAD, MIN_BLOCK_SIZE, MAX_ALLOC, LARGEST_FIT, FL_COUNT) == \
        (16, 16, 4064, 4032, 6)


@pytest.mark.parametrize("size, expect", [
    (1, (16, 0, 4)), (16, (16, 0, 4)), (17, (32, 0, 8)), (112, (112, 0, 28)),
    (127, (128, 1, 0)), (128, (128, 1, 0)), (129, (144, 1, 4)), (560, (560, 3, 3)), (1000, (1008, 3, 31)), (1025, (1056, 4, 1)),
    (2064, (2112, 5, 1)), (4032, (4032, 5, 31)), (4033, (4096, 6, 0)), (4064, (4096, 6, 0))])
def test_mapping_search(size, expect):
    assert mapping_search(size) == expect


def test_classes_tile_the_sizes():
    """Every block size lands in the class whose range holds it; a search's rounded size is the
    lower bound of its class, so every block on that list or above fits."""
    for s in range(0, MAX_ALLOC + 1, 16):
        lo, hi = class_range(*mapping_insert(s))
        assert lo <= s < hi
    for s in range(1, LARGEST_FIT + 1):
        r, fl, sl = mapping_search(s)
        assert r >= s and r % 16 == 0 and class_range(fl, sl)[0] <= r < class_range(fl, sl)[1]
        if r >= 128:
            assert class_range(fl, sl)[0] == r


# --- the named cases --------------------------------------------------------------------------

def test_lazy_first_frame_then_region_new_and_split():
    t, fr = pool()
    assert fr.got == [] and t.num_regions == 0 and t.used_size == 0
    t.check()
    a = t.alloc(100)                                  # region-new (frame 5), split
    t.check()
    assert a == 0x5010 and fr.got == [5] and t.usable_size(a) == 112
    assert blocks(t, 5) == [(0, 112, "used"), (128, 3936, "free"), (4080, 0, "sentinel")]
    assert lists(t) == {(5, 29): [0x5090]}
    assert t.used_size == 16 + 112 + 16 and t.total_size == PAGE
    d = t.describe()
    assert d["fl_bitmap"] == 1 << 5 and d["sl_bitmaps"] == [0] * 5 + [1 << 29]
    assert d["free_lists"] == [(5, 29, 3904, 3968, [0x5090])]


def test_no_split_hands_out_the_whole_block():
    t, fr = pool()
    a = t.alloc(128)                                  # 128-byte block at 0x5000
    b = t.alloc(16)                                   # 16-byte block at 0x5090
    assert (a, b) == (0x5010, 0x50a0)
    t.free(a)                                         # a free 128-byte block, class (1, 0)
    t.check()
    assert lists(t) == {(1, 0): [0x5010], (5, 28): [0x50c0]}
    c = t.alloc(112)                                  # class (0, 28) is empty; (1, 0) has 128:
    t.check()                                         # leftover 16 < 32, no-split
    assert c == 0x5010 and t.usable_size(c) == 128
    assert blocks(t, 5)[:3] == [(0, 128, "used"), (144, 16, "used"), (176, 3888, "free")]
    assert t.used_size == 16 + (128 + 16) + (16 + 16)


def three(t):
    got = [t.alloc(100) for _ in range(3)]
    t.check()
    assert got == [0x5010, 0x5090, 0x5110]
    assert blocks(t, 5)[3] == (384, 3680, "free")
    return got


def test_free_without_neighbours_then_coalesce_next():
    t, fr = pool()
    a, b, c = three(t)
    t.free(b)                                         # both neighbours used: no coalescing
    t.check()
    assert blocks(t, 5)[:3] == [(0, 112, "used"), (128, 112, "free"), (256, 112, "used")]
    assert lists(t)[(0, 28)] == [0x5090]
    t.free(a)                                         # coalesce-next: a absorbs b
    t.check()
    assert blocks(t, 5)[:2] == [(0, 240, "free"), (256, 112, "used")]
    assert lists(t) == {(1, 28): [0x5010], (5, 25): [0x5190]}


def test_coalesce_prev():
    t, fr = pool()
    a, b, c = three(t)
    t.free(a)
    t.free(b)                                         # coalesce-prev: a's block absorbs b
    t.check()
    assert blocks(t, 5)[:2] == [(0, 240, "free"), (256, 112, "used")]
    assert (0, 28) not in lists(t) and lists(t)[(1, 28)] == [0x5010]


def test_coalesce_both_then_region_return():
    t, fr = pool()
    a, b, c = three(t)
    t.free(a)
    t.free(c)                                         # coalesce-next with the 3680 tail
    t.check()
    assert blocks(t, 5) == [(0, 112, "free"), (128, 112, "used"), (256, 3808, "free"),
                            (4080, 0, "sentinel")]
    t.free(b)                                         # both sides, then region-return
    t.check()
    assert fr.put == [5] and t.num_regions == 0 and t.used_size == 0
    assert t.describe()["regions"] == {} and t.describe()["free_lists"] == []


def test_region_new_for_a_second_frame_and_lifo_lists():
    t, fr = pool()
    a = t.alloc(4032)                                 # leaves a 16-byte free block at 4048
    t.check()
    assert a == 0x5010 and blocks(t, 5) == [(0, 4032, "used"), (4048, 16, "free"),
                                            (4080, 0, "sentinel")]
    b = t.alloc(100)                                  # nothing big enough: region-new (frame 9)
    t.check()
    assert b == 0x9010 and fr.got == [5, 9] and t.frames == [5, 9]
    c = t.alloc(16)                                   # the 16-byte block of frame 5
    assert c == 0x5fe0
    t.free(c)
    d = t.alloc(200)
    e = t.alloc(200)
    t.free(d)
    t.free(e)                                         # coalesce-next with the tail, then
    t.check()                                         # coalesce-prev with d: one block after b
    assert blocks(t, 9)[:2] == [(0, 112, "used"), (128, 3936, "free")]
    assert lists(t)[(0, 4)] == [0x5fe0]


def test_free_list_head_is_the_last_block_freed():
    t, fr = pool()
    got = [t.alloc(16) for _ in range(5)]             # 16-byte blocks, 32 bytes apart
    assert got == [0x5010 + 32 * i for i in range(5)]
    t.free(got[1])
    t.free(got[3])
    assert lists(t)[(0, 4)] == [got[3], got[1]]       # head first
    assert t.alloc(16) == got[3]                      # the head goes first (Xen's LIFO)
    t.check()


def test_largest_fit_and_over_max_alloc_take_no_frame():
    t, fr = pool()
    for size in (LARGEST_FIT + 1, MAX_ALLOC, MAX_ALLOC + 1, 1 << 20):
        assert t.alloc(size) is None
    assert t.failed == 4 and fr.got == [] and t.num_regions == 0
    assert t.alloc(LARGEST_FIT) == 0x5010
    t.check()


def test_get_frame_failure_changes_nothing():
    t, fr = pool()
    fr.refuse = True
    assert t.alloc(64) is None and t.failed == 1      # lazy first frame refused
    assert t.describe()["regions"] == {}
    fr.refuse = False
    t.alloc(4032)
    before = t.describe()
    fr.refuse = True
    assert t.alloc(64) is None                        # region-new refused
    after = t.describe()
    assert after.pop("failed") == before.pop("failed") + 1 and after == before
    t.check()


def test_destroy_gives_every_frame_back():
    t, fr = pool()
    t.alloc(4032)
    t.alloc(4032)
    assert t.destroy() == 2 and fr.put == [5, 9]
    assert t.num_regions == 0 and t.used_size == 0 and t.describe()["free_lists"] == []
    t.check()
    assert t.alloc(8) == 0x9010                       # usable again, lazily (9 came back last)
    t.check()


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("size, err", [(0, ValueError), (-1, ValueError), (1.0, TypeError),
                                       ("8", TypeError), (True, TypeError), (None, TypeError)])
def test_alloc_bad_size(size, err):
    t, fr = pool()
    with pytest.raises(err):
        t.alloc(size)
    assert fr.got == [] and t.failed == 0
    t.check()


def test_free_of_anything_but_an_allocated_block_changes_nothing():
    t, fr = pool()
    a, b, c = three(t)
    t.free(b)
    before = t.describe()
    for addr in (b,                     # already free
                 a + 16,                # inside a block
                 a - 16,                # a header, not a payload
                 0x5ff0 + 16,           # the sentinel's "payload" (= the next frame's start)
                 0x7010,                # a frame the pool does not hold
                 0, -16):
        with pytest.raises(ValueError, match="not an allocated block"):
            t.free(addr)
        with pytest.raises(ValueError):
            t.usable_size(addr)
        assert t.describe() == before
    for addr in (float(a), str(a), None):
        with pytest.raises(TypeError):
            t.free(addr)
    assert t.describe() == before
    t.check()


def test_free_inside_a_used_payload_changes_nothing():
    """free() and usable_size() check a header in O(1) from its words and its successor's; an
    address inside a used block's payload is refused even where the words look like a used
    header: a fake one, or the stale header a coalesce leaves behind."""
    t, fr = pool()
    a, b, c = three(t)
    word(t, a + 32, 1, 16)                            # a fake used 16-byte header in a's payload
    word(t, a + 64, 0, a - 16)                        # whose successor names another block
    t.free(b)
    t.free(a)                                         # coalesce-next: b's header stays, free
    assert word(t, b - 16, 1) & 1
    assert t.alloc(240) == a                          # a again, now used and spanning b
    t.check()
    before = t.describe()
    for addr in (a + 16, a + 48, a + 80, b, a + 96, b + 16, c + 32):
        with pytest.raises(ValueError, match="not an allocated block"):
            t.free(addr)
        with pytest.raises(ValueError):
            t.usable_size(addr)
        assert t.describe() == before
        t.check()
    t.free(c)
    t.free(a)                                         # region-return
    assert t.num_regions == 0 and fr.put == [5]


def test_crafted_words_pass_the_o1_check_but_not_check():
    """The documented limit of that check: words made to look like a used header *and* a
    successor naming it pass (Xen checks nothing at all); check() walks the chains and sees
    the damage."""
    t, fr = pool()
    a, b, c = three(t)
    word(t, a + 32, 1, 16)
    word(t, a + 64, 0, a + 32)
    assert t.usable_size(a + 48) == 16
    t.free(a + 48)
    with pytest.raises(InvariantError):
        t.check()


def test_headers_live_in_the_frames():
    """A pool over host memory writes Xen's struct bhdr words into the frames: the describe()
    picture and the lists can be read back from the bytes alone. Frame 0 comes first from the
    heap, so address 0 is a real header (hence NO_BLOCK, not 0, for "none")."""
    np = pytest.importorskip("numpy")
    from tmemref.host.alloc import tmem_pool
    from tmemref.host.frames import HostMemory
    mem = HostMemory(4)
    t = tmem_pool(mem)
    a, b, c, d = t.alloc(100), t.alloc(200), t.alloc(100), t.alloc(16)
    t.free(b)
    t.free(d)
    assert a == 0x10
    mem.bytes[a:a + 112] = b"\xff" * 112             # payloads are the user's: no header there
    mem.bytes[c:c + 100] = bytes(range(100))
    t.check()
    words = np.frombuffer(mem.data.tobytes(), dtype="<u8")   # little-endian u64, as on x86-64
    desc = t.describe()
    for f, row in desc["regions"].items():
        prev, prev_free = NO_BLOCK, False
        for off, size, state in row:
            h = ((f << 12) + off) >> 3
            assert int(words[h]) == prev
            w = int(words[h + 1])
            assert (w & ~3, bool(w & 1), bool(w & 2)) == (size, state == "free", prev_free)
            prev, prev_free = (f << 12) + off, state == "free"
    for fl, sl, _, _, addrs in desc["free_lists"]:
        got, hdr, back = [], t._heads[fl << 5 | sl], NO_BLOCK
        while hdr != NO_BLOCK:
            assert int(words[(hdr >> 3) + 2]) == back     # word 2: prev on the list
            got.append(hdr + 16)
            back, hdr = hdr, int(words[(hdr >> 3) + 3])   # word 3: next on the list
        assert got == addrs
    assert desc["regions"][0][:3] == [(0, 112, "used"), (128, 208, "free"), (352, 112, "used")]


def test_private_memory_grows_to_each_new_frame():
    fr = Frames(frames=(1, 40, 3, 4))                 # handed out 4, 3, 40, then 1
    t = Tlsf("t", fr.get, fr.give)
    assert len(t._buf) == 0 and len(t._mem) == 0
    x = t.alloc(4032)
    assert x == 0x4010 and len(t._buf) == 5 * PAGE   # covers frame 4
    y = t.alloc(4032)
    assert y == 0x3010 and len(t._buf) == 5 * PAGE   # frame 3 fits already
    z = t.alloc(4032)
    assert z == 0x28010 and len(t._buf) == 41 * PAGE  # frame 40: at least up to it
    t.free(y)
    w = t.alloc(4032)                                  # frame 3 again (it was given back)
    v = t.alloc(4032)
    assert v == 0x1010 and len(t._buf) == 41 * PAGE
    assert len(t._mem) == 41 * PAGE // 8 and t.frames == [1, 3, 4, 40]
    t.check()
    for p in (x, z, w, v):
        t.free(p)
    t.check()
    assert t.num_regions == 0
    t._add_region(41)                                  # one past the end: doubles to 82
    assert len(t._buf) == 82 * PAGE


def test_memory_given_must_be_writable_and_cover_the_frames():
    with pytest.raises(TypeError):
        Tlsf("t", lambda: 0, lambda f: None, memory=bytes(PAGE))
    t = Tlsf("t", lambda: 1, lambda f: None, memory=bytearray(PAGE))
    with pytest.raises(ValueError, match="outside the pool's memory"):
        t.alloc(8)
    t = Tlsf("t", lambda: 0, lambda f: None, memory=bytearray(PAGE))
    assert t.alloc(8) == 0x10
    t.check()


# --- locking ----------------------------------------------------------------------------------

def test_lock_dropped_around_get_frame_held_around_put_frame():
    """Frames.get takes heap_lock (rank 4) and asserts the pool lock is not held; Frames.give
    asserts it is. With order checking on (conftest), holding the pool lock (rank 6) while
    taking heap_lock would raise LockOrderError."""
    lock = SpinLock("xmem_pool lock", RANK_XMEM)
    t, fr = pool(lock=lock)
    a = t.alloc(100)
    assert held_locks() == [] and not lock.held
    t.free(a)                                         # region-return: put_frame under the lock
    assert fr.put == [5] and held_locks() == [] and not lock.held
    fr.refuse = True
    assert t.alloc(100) is None and held_locks() == [] and not lock.held
    with pytest.raises(ValueError):
        t.free(0x5010)
    with pytest.raises(ValueError):
        t.alloc(0)
    assert held_locks() == [] and not lock.held
    fr.refuse = False
    t.alloc(8)
    assert t.destroy() == 1 and held_locks() == [] and not lock.held


def test_lock_released_when_the_frame_callbacks_raise():
    lock = SpinLock("xmem_pool lock", RANK_XMEM)

    def boom(*_):
        raise RuntimeError("boom")

    t = Tlsf("t", boom, boom, lock=lock)
    with pytest.raises(RuntimeError):
        t.alloc(8)
    assert held_locks() == [] and not lock.held and t.num_regions == 0
    t.check()
    fr = Frames()
    t = Tlsf("t", fr.get, boom, lock=lock)
    a = t.alloc(8)
    with pytest.raises(RuntimeError):
        t.free(a)                                     # put_frame raises after the state changed
    assert held_locks() == [] and not lock.held
    t.check()                                         # ... and the state is whole
    assert t.num_regions == 0


def test_a_frame_fetched_but_not_used_goes_back():
    """While the lock is dropped for get_frame, another CPU frees room elsewhere: the search
    then finds that first, and the fresh frame goes straight back (_unused_region)."""
    lock = SpinLock("xmem_pool lock", RANK_XMEM)
    fr = Frames()
    t = Tlsf("t", lambda: (t.free(a), fr.get())[1] if fr.got else fr.get(), fr.give, lock=lock)
    a = t.alloc(100)                                  # frame 5: a (112 B), then
    b = t.alloc(3904)                                 # b, and a 16-byte free tail
    assert (a, b, fr.got) == (0x5010, 0x5090, [5])
    assert t.alloc(100) == a                          # no room: frame 9 fetched, a freed
    assert fr.got == [5, 9] and fr.put == [9] and t.frames == [5]
    t.check()
    assert held_locks() == [] and not lock.held


def test_order_checker_would_catch_the_lock_held_over_get_frame():
    """The check above can fail: taking heap_lock with the pool lock held is a violation."""
    lock = SpinLock("xmem_pool lock", RANK_XMEM)
    heap = SpinLock("heap_lock", RANK_HEAP)
    with lock:
        with pytest.raises(locks.LockOrderError):
            heap.acquire()


# --- each invariant, broken on purpose --------------------------------------------------------

def broken(t, n):
    with pytest.raises(InvariantError, match=f"invariant {n}:"):
        t.check()


def setup_three_b_free():
    t, fr = pool()
    a, b, c = three(t)
    t.free(b)
    t.check()
    return t, a, b, c


def test_invariant_1_bitmaps():
    t, *_ = setup_three_b_free()
    t._sl[0] |= 1 << 3                                # a bit with no list behind it
    broken(t, 1)
    t, *_ = setup_three_b_free()
    t._fl |= 1 << 4
    broken(t, 1)
    t, *_ = setup_three_b_free()
    t._sl[0] &= ~(1 << 28)                            # a list whose bit is clear
    t._fl &= ~1
    broken(t, 1)


def word(t, b, k, value=None):
    """Word ``k`` of the header at ``b`` in the pool's memory (0 prev_hdr, 1 size, 2 prev free,
    3 next free); with ``value``, write it first."""
    if value is not None:
        t._mem[(b >> 3) + k] = value
    return t._mem[(b >> 3) + k]


def test_invariant_2_lists():
    t, a, b, c = setup_three_b_free()                 # b (112 B) belongs on (0, 28)
    t._extract(b - 16, 112)
    t._heads[27] = b - 16                             # ... put on (0, 27), bits consistent
    word(t, b - 16, 2, NO_BLOCK)
    word(t, b - 16, 3, NO_BLOCK)
    t._sl[0] |= 1 << 27
    t._fl |= 1
    broken(t, 2)
    t, a, b, c = setup_three_b_free()
    t._extract(b - 16, 112)                           # a free block on no list
    broken(t, 2)
    t, a, b, c = setup_three_b_free()
    t._heads[28] = a - 16                             # a used block heads a list
    broken(t, 2)
    t, a, b, c = setup_three_b_free()
    word(t, b - 16, 3, b - 16)                        # the list runs in a circle
    broken(t, 2)
    t, a, b, c = setup_three_b_free()
    word(t, b - 16, 2, c - 16)                        # the head has a prev link
    broken(t, 2)


def test_invariant_3_tiling():
    t, a, b, c = setup_three_b_free()
    word(t, c - 16, 1, word(t, c - 16, 1) + 16)       # c's size runs into the tail block
    broken(t, 3)
    t, a, b, c = setup_three_b_free()
    word(t, a - 16, 1, 32)                            # a's size stops short, at a stray
    word(t, a + 32, 0, a - 16)                        # header inside a (which is consistent;
    word(t, a + 32, 1, 16)                            # what follows it is not)
    broken(t, 3)
    t, a, b, c = setup_three_b_free()
    t._regions[7] = None                              # a region with no blocks
    t.num_regions += 1
    broken(t, 3)
    t, a, b, c = setup_three_b_free()                 # a free list member on no chain: a fake
    fake = a + 32                                     # free block inside a's payload, listed
    t._extract(b - 16, 112)                           # in b's place
    word(t, fake, 1, 112 | 1)
    t._insert(fake, 112)
    word(t, b - 16, 1, 112)                           # (b itself now looks used, so that
    word(t, c - 16, 1, word(t, c - 16, 1) & ~2)       # invariants 2 and 4 hold)
    used = t.used_size
    broken(t, 3)
    assert t.used_size == used


def test_invariant_4_links_and_prev_free_bits():
    t, a, b, c = setup_three_b_free()
    word(t, c - 16, 1, word(t, c - 16, 1) & ~2)       # c forgets that b is free
    broken(t, 4)
    t, a, b, c = setup_three_b_free()
    word(t, c - 16, 0, a - 16)
    broken(t, 4)
    t, a, b, c = setup_three_b_free()
    word(t, a - 16, 0, 0x5000)                        # the first block has a prev_hdr
    broken(t, 4)


def test_invariant_5_coalesced():
    t, a, b, c = setup_three_b_free()
    hb = b - 16                                       # split free b (112) into two free 48s
    t._extract(hb, 112)
    word(t, hb, 1, 48 | 1)
    word(t, hb + 64, 1, 48 | 1 | 2)
    word(t, hb + 64, 0, hb)
    word(t, c - 16, 0, hb + 64)
    t._insert(hb, 48)
    t._insert(hb + 64, 48)
    broken(t, 5)
    t, *_ = setup_three_b_free()
    t._add_region(7)                                  # a wholly free region kept
    broken(t, 5)


def test_invariant_6_counters():
    t, *_ = setup_three_b_free()
    t.used_size += 16
    broken(t, 6)
    t, *_ = setup_three_b_free()
    t.num_regions += 1
    broken(t, 6)


# --- Hypothesis: the allocator against a plain model of free space -----------------------------

NFRAMES = 16
SIZES = st.one_of(st.integers(1, 128), st.sampled_from([24, 64, 72, 112, 560]),
                  st.integers(129, MAX_ALLOC), st.integers(LARGEST_FIT - 8, MAX_ALLOC + 64))
COVERAGE: dict = {}


class TlsfModel(RuleBasedStateMachine):
    """The model: the live allocations ``{payload address: (requested size, fill byte)}``.
    From it alone follow the held frames (exactly those with a live block) and the free space:
    per frame, the gaps between live blocks, each of which must be exactly one free block.
    Payloads are filled in a ``mem`` bytearray and must survive every later step."""

    def __init__(self):
        super().__init__()
        self.lock = SpinLock("xmem_pool lock", RANK_XMEM)
        self.fr = Frames(frames=range(NFRAMES - 1, 1, -1), lock=self.lock)
        self.t = Tlsf("model", self.fr.get, self.fr.give, lock=self.lock)
        self.mem = bytearray(NFRAMES * PAGE)
        self.live: dict = {}
        self.fill = 0
        self.seen = set()

    def hit(self, event):
        self.seen.add(event)

    def gaps(self):
        """{frame: [(header offset, payload size)]} of the free space the model implies."""
        by_frame: dict = {}
        for a in self.live:
            by_frame.setdefault(a >> 12, []).append(a)
        out = {}
        for f, addrs in by_frame.items():
            pos, gaps = 0, []
            for a in sorted(addrs):
                h = (a & 0xfff) - 16
                if h > pos:
                    gaps.append((pos, h - pos - 16))
                pos = h + 16 + self.t.usable_size(a)
            if pos < PAGE - 16:
                gaps.append((pos, PAGE - 16 - pos - 16))
            out[f] = gaps
        return out

    @rule(size=SIZES)
    def alloc(self, size):
        before = self.t.describe()
        r = mapping_search(size)[0]
        fits = any(s >= r for g in self.gaps().values() for _, s in g)
        can_grow = not self.fr.refuse and bool(self.fr.free)
        a = self.t.alloc(size)
        if size > LARGEST_FIT or not (fits or can_grow):
            assert a is None
            after = self.t.describe()
            assert after.pop("failed") == before.pop("failed") + 1 and after == before
            self.hit("refused: too big" if size > LARGEST_FIT else "refused: no frame")
            return
        assert a is not None
        assert self.t.num_regions == before["num_regions"] + (not fits)
        u = self.t.usable_size(a)
        assert r <= u < r + 32 and u % 16 == 0
        self.fill = self.fill % 255 + 1
        self.live[a] = (size, self.fill)
        after = (a & 0xfff) + u
        split = any(g == after for g, _ in self.gaps()[a >> 12])    # a free tail right after
        self.hit("split" if split else "no-split")
        if not fits:
            self.hit("region-new")
        self.mem[a:a + size] = bytes([self.fill]) * size

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data):
        a = data.draw(st.sampled_from(sorted(self.live)))
        gaps = self.gaps()[a >> 12]
        h = (a & 0xfff) - 16
        end = h + 16 + self.t.usable_size(a)
        if any(g + 16 + s == h for g, s in gaps):
            self.hit("coalesce-prev")
        if any(g == end for g, _ in gaps):
            self.hit("coalesce-next")
        n = self.t.num_regions
        self.t.free(a)
        del self.live[a]
        if self.t.num_regions < n:
            self.hit("region-return")

    @rule(addr=st.integers(-32, NFRAMES * PAGE + 32))
    def bad_free(self, addr):
        if addr in self.live:
            return
        before = self.t.describe()
        with pytest.raises(ValueError):
            self.t.free(addr)
        assert self.t.describe() == before

    @rule(refuse=st.booleans())
    def set_refuse(self, refuse):
        self.fr.refuse = refuse

    @invariant()
    def agrees_with_model(self):
        t = self.t
        t.check()
        assert held_locks() == [] and not self.lock.held
        d = t.describe()
        frames = {a >> 12 for a in self.live}
        assert set(d["regions"]) == frames == set(t.frames)    # back as soon as empty
        assert sorted(self.fr.free + t.frames) == list(range(2, NFRAMES))
        gaps = self.gaps()
        for f, row in d["regions"].items():
            assert [(o, s) for o, s, state in row if state == "free"] == gaps[f]
        prev_end = None
        used = 0
        for a in sorted(self.live):
            u = t.usable_size(a)
            off = a & 0xfff
            assert off >= 16 and off + u <= PAGE - 16        # inside its frame, before sentinel
            assert prev_end is None or prev_end <= a - 16, f"{a:#x} overlaps the block before"
            prev_end = a + u
            size, fill = self.live[a]
            assert self.mem[a:a + size] == bytes([fill]) * size
            used += u + 16
        assert t.used_size == used + 16 * len(frames)

    def teardown(self):
        for e in self.seen:
            COVERAGE[e] = COVERAGE.get(e, 0) + 1


def test_model():
    COVERAGE.clear()
    run_state_machine_as_test(TlsfModel, settings=settings(
        max_examples=200, stateful_step_count=80, deadline=None, derandomize=True,
        database=None))
    for event in ("region-new", "split", "no-split", "coalesce-prev", "coalesce-next",
                  "region-return", "refused: too big", "refused: no frame"):
        assert COVERAGE.get(event), f"no run reached {event}: {COVERAGE}"


# --- the picture ------------------------------------------------------------------------------

def test_picture_draws_bitmaps_lists_and_frames():
    pytest.importorskip("graphviz")
    from tmemref.viz import tlsf as draw
    t, fr = pool()
    a, b, c = three(t)
    t.free(b)
    g = draw(t)
    src = g.source
    assert src == draw(t.describe()).source           # from the pool or its snapshot
    assert "frame 5" in src and "(0,28)" in src and "(5,25)" in src
    assert src.count("f5:b128") == 1                   # the free block's list edge
    from tmemref.viz.tlsf import MARK
    assert MARK not in src and src.count(MARK) + 1 == draw(t, mark=[c]).source.count(MARK)
    import subprocess
    subprocess.run(["dot", "-Tsvg"], input=src.encode(), check=True, capture_output=True)
