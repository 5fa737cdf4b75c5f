"""Tests for tmemref.ds.radix: oracle, billing, fault injection, named cases, corruption."""

import errno
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tmemref.ds import radix
from tmemref.ds.radix import (
    CASES,
    DIRECT_ROOT,
    EXTEND,
    FREE_NODE,
    RADIX_TREE_INDEX_BITS,
    RADIX_TREE_MAP_MASK,
    RADIX_TREE_MAP_SHIFT,
    RADIX_TREE_MAP_SIZE,
    SHRINK,
    RadixNode,
    RadixTree,
)
from tmemref.errors import InvariantError

MAX = 2**32 - 1
EDGES = [0, 1, 63, 64, 65, 4095, 4096, 262143, 262144, 2**30 - 1, 2**30, MAX - 1, MAX]


class Billing:
    """node_alloc / node_free callbacks that count, and refuse after ``budget`` grants."""

    def __init__(self, budget=None):
        self.allocs = 0
        self.frees = 0
        self.refusals = 0
        self.budget = budget
        self.handles = set()          # handles granted and not yet given back

    def alloc(self):
        if self.budget is not None and self.allocs >= self.budget:
            self.refusals += 1
            return None
        self.allocs += 1
        self.handles.add(self.allocs)
        return self.allocs

    def free(self, handle):
        assert handle in self.handles, f"node_free({handle!r}): not a live handle"
        self.handles.remove(handle)
        self.frees += 1

    def tree(self):
        return RadixTree(node_alloc=self.alloc, node_free=self.free)

    @property
    def live(self):
        return self.allocs - self.frees


def shape(tree):
    """A deep, comparable picture of the whole tree."""

    def node_shape(x, level):
        if level == 0:
            return x
        return (x.count, tuple(None if s is None else node_shape(s, level - 1) for s in x.slots))

    if tree.height == 0:
        body = tree.root
    else:
        body = node_shape(tree.root, tree.height)
    return (tree.height, tree.count, tree.node_count, body)


def random_index(rng):
    r = rng.random()
    if r < 0.5:
        return rng.randrange(200)  # small file offsets: the common case
    if r < 0.8:
        return rng.randrange(20000)
    if r < 0.95:
        return rng.choice(EDGES)
    return rng.randrange(2**32)


def test_constants():
    assert (RADIX_TREE_MAP_SHIFT, RADIX_TREE_MAP_SIZE, RADIX_TREE_MAP_MASK) == (6, 64, 63)
    assert RADIX_TREE_INDEX_BITS == 32
    assert radix.RADIX_TREE_MAX_HEIGHT == 6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_against_dict(seed):
    rng = random.Random(seed)
    bill = Billing()
    t = bill.tree()
    model = {}
    for step in range(3000):
        index = random_index(rng)
        r = rng.random()
        if r < 0.5:
            rc = t.insert(index, ("item", index, step))
            if index in model:
                assert rc == -errno.EEXIST
            else:
                assert rc == 0
                model[index] = ("item", index, step)
        elif r < 0.7 or not model:
            assert t.delete(index) == model.pop(index, None)
        else:  # delete a present index, so the tree stays a size that check() can afford
            index = rng.choice(list(model))
            assert t.delete(index) == model.pop(index)
        t.check()
        assert len(t) == len(model)
        assert t.node_count == bill.live
        assert t.lookup(index) == model.get(index)
    assert list(t.items()) == sorted(model.items())
    for index in rng.sample(range(2**32), 50):
        assert t.lookup(index) == model.get(index)
    # Delete everything: all nodes must come back.
    for index in list(model):
        t.delete(index)
        t.check()
    assert t.root is None and t.height == 0 and t.node_count == 0 and bill.live == 0


@pytest.mark.parametrize(
    "index, height, nodes",
    [(0, 0, 0), (1, 1, 1), (63, 1, 1), (64, 2, 2), (4095, 2, 2), (4096, 3, 3),
     (2**30 - 1, 5, 5), (2**30, 6, 6), (MAX, 6, 6)],
)
def test_single_index_height_and_nodes(index, height, nodes):
    bill = Billing()
    t = bill.tree()
    assert t.insert(index, "x") == 0
    t.check()
    assert (t.height, t.node_count, bill.live) == (height, nodes, nodes)
    assert t.lookup(index) == "x"
    assert t.delete(index) == "x"
    t.check()
    assert (t.height, t.root, t.node_count, bill.live) == (0, None, 0, 0)


def test_edge_indices_together():
    bill = Billing()
    t = bill.tree()
    for i in EDGES:
        assert t.insert(i, i) == 0
        t.check()
    assert [i for i, _ in t.items()] == EDGES
    assert t.height == 6
    for i in EDGES:
        assert t.lookup(i) == i
        assert t.insert(i, "dup") == -errno.EEXIST
    for i in reversed(EDGES):
        assert t.delete(i) == i
        t.check()
        assert t.node_count == bill.live
    assert t.height == 0 and bill.live == 0


@pytest.mark.parametrize("bad", [-1, 2**32, -(2**40), 2**64])
def test_bad_index_raises(bad):
    t = RadixTree()
    t.insert(5, "x")
    before = shape(t)
    for call in (lambda: t.insert(bad, "y"), lambda: t.lookup(bad), lambda: t.delete(bad)):
        with pytest.raises(ValueError):
            call()
    assert shape(t) == before


def test_none_item_raises():
    with pytest.raises(ValueError):
        RadixTree().insert(3, None)


def test_direct_root():
    seen = []
    t = RadixTree(node_alloc=lambda: pytest.fail("index 0 alone must not allocate"))
    t.trace = seen.append
    assert t.insert(0, "page0") == 0
    assert seen == [DIRECT_ROOT]
    assert (t.height, t.root, t.node_count) == (0, "page0", 0)
    assert t.lookup(0) == "page0" and t.lookup(1) is None and t.lookup(MAX) is None
    assert t.insert(0, "again") == -errno.EEXIST
    t.check()
    assert t.delete(1) is None and t.delete(0) == "page0"
    assert t.root is None and len(t) == 0
    t.check()


def test_extend_keeps_old_items_and_traces_per_level():
    seen = []
    bill = Billing()
    t = bill.tree()
    t.insert(0, "a")
    t.insert(5, "b")  # extend 0 -> 1
    t.trace = seen.append
    assert t.insert(262144, "c") == 0  # needs height 4: three new levels on top
    assert seen == [EXTEND] * 3
    assert t.height == 4
    # 3 stacked nodes above the old root, plus a fresh path of 3 nodes below the top.
    assert t.node_count == 1 + 3 + 3 == bill.live
    t.check()
    assert list(t.items()) == [(0, "a"), (5, "b"), (262144, "c")]


def test_extend_from_empty_builds_a_fresh_path():
    seen = []
    t = RadixTree()
    t.trace = seen.append
    t.insert(4096, "x")
    assert seen == [] and t.height == 3 and t.node_count == 3
    t.check()


def test_shrink_and_free_node():
    seen = []
    bill = Billing()
    t = bill.tree()
    for i in (0, 1, 64):
        t.insert(i, i)
    assert t.height == 2 and t.node_count == 3
    t.trace = seen.append
    assert t.delete(64) == 64  # frees the node holding 64; root then uses only slot 0
    assert seen == [FREE_NODE, SHRINK]
    assert t.height == 1 and t.node_count == 1 == bill.live
    t.check()
    seen.clear()
    assert t.delete(1) == 1  # leaves only index 0: shrink to a direct root
    assert seen == [SHRINK]
    assert (t.height, t.root, t.node_count, bill.live) == (0, 0, 0, 0)
    t.check()


def test_delete_of_missing_index_changes_nothing():
    t = RadixTree()
    for i in (3, 70, 5000):
        t.insert(i, i)
    before = shape(t)
    for i in (4, 71, 4999, 5001, 262144, 0, MAX):
        assert t.delete(i) is None
    assert shape(t) == before


def test_every_case_is_hit():
    seen = set()
    t = RadixTree()
    t.trace = seen.add
    rng = random.Random(5)
    for _ in range(500):
        i = random_index(rng)
        if rng.random() < 0.5:
            t.insert(i, i)
        else:
            t.delete(i)
    t.insert(0, 0)
    for i, _ in reversed(list(t.items())):  # index 0 last, so the tree shrinks onto it
        t.delete(i)
    t.delete(0)
    t.insert(0, 0)
    assert seen == set(CASES)


def test_case_names_exported():
    assert len(set(CASES)) == len(CASES) == 4
    for name in radix.__all__:
        assert hasattr(radix, name)


# --- fault injection: -ENOMEM leaves the tree exactly as it was ---------------------------


def needed_nodes(tree_indices, index):
    bill = Billing()
    t = bill.tree()
    for i in tree_indices:
        t.insert(i, i)
    before = bill.allocs
    assert t.insert(index, "new") == 0
    return bill.allocs - before


@pytest.mark.parametrize(
    "existing, index",
    [
        ([], 1),
        ([], MAX),
        ([0], 64),  # extend from a direct root
        ([0, 5], 2**30),  # extend by five levels
        ([3, 70], 4096 + 64),  # extend, the new path below the top
        ([1, 4096], 2 * 4096 + 5),  # missing path nodes inside the current height
        ([1, 262144], 262144 + 64 * 64 * 3),
    ],
)
def test_enomem_leaves_tree_unchanged(existing, index):
    need = needed_nodes(existing, index)
    assert need > 0
    for k in range(need):
        bill = Billing()
        t = bill.tree()
        for i in existing:
            t.insert(i, i)
        before = shape(t)
        live_before = bill.live
        bill.budget = bill.allocs + k  # grant k more nodes, refuse the next
        assert t.insert(index, "new") == -errno.ENOMEM
        assert bill.refusals == 1
        assert shape(t) == before
        assert bill.live == live_before == t.node_count
        t.check()
        assert t.lookup(index) is None
        bill.budget = None
        assert t.insert(index, "new") == 0
        t.check()
        assert t.node_count == bill.live


def test_enomem_random_fault_injection():
    rng = random.Random(9)
    bill = Billing()
    t = bill.tree()
    model = {}
    for _ in range(1500):
        i = random_index(rng)
        if rng.random() < 0.6:
            faulty = rng.random() < 0.3
            bill.budget = bill.allocs + rng.randrange(4) if faulty else None
            before = shape(t) if faulty else None
            rc = t.insert(i, i)
            if rc == -errno.ENOMEM:
                assert faulty and shape(t) == before
            elif i in model:
                assert rc == -errno.EEXIST
            else:
                assert rc == 0
                model[i] = i
        else:
            assert t.delete(i) == model.pop(i, None)
        t.check()
        assert t.node_count == bill.live
    assert dict(t.items()) == model


def test_existing_index_returns_eexist_without_allocating():
    bill = Billing()
    t = bill.tree()
    t.insert(4096, "a")
    allocs = bill.allocs
    bill.budget = allocs  # any allocation would fail
    assert t.insert(4096, "b") == -errno.EEXIST
    assert bill.allocs == allocs and t.lookup(4096) == "a"


# --- destroy and items ----------------------------------------------------------------------


def test_destroy_calls_fn_and_frees_every_node():
    bill = Billing()
    t = bill.tree()
    indices = [0, 7, 64, 5000, MAX]
    for i in indices:
        t.insert(i, f"p{i}")
    got = []
    t.destroy(got.append)
    assert got == [f"p{i}" for i in indices]
    assert bill.live == 0 and t.node_count == 0 and len(t) == 0 and t.root is None
    t.check()
    assert t.insert(3, "again") == 0  # usable afterwards


def test_destroy_direct_root_and_empty():
    got = []
    t = RadixTree()
    t.destroy(got.append)
    t.insert(0, "only")
    t.destroy(got.append)
    t.destroy()
    assert got == ["only"] and t.root is None


def test_items_is_a_snapshot():
    t = RadixTree()
    for i in range(0, 300, 7):
        t.insert(i, i)
    for i, item in t.items():
        assert t.delete(i) == item
    assert len(t) == 0 and t.height == 0


# --- one corruption per numbered invariant ----------------------------------------------------


def three_level_tree():
    t = RadixTree()
    for i in (0, 1, 100, 4096, 4097):
        t.insert(i, i)
    t.check()
    return t


def test_invariant_1_node_count_field():
    t = three_level_tree()
    t.root.slots[0].count += 1
    with pytest.raises(InvariantError, match="invariant 1"):
        t.check()


def test_invariant_1_slot_array():
    t = three_level_tree()
    t.root.slots[1].slots.append(None)
    with pytest.raises(InvariantError, match="invariant 1"):
        t.check()


def test_invariant_2_empty_node():
    t = three_level_tree()
    t.root.slots[5] = RadixNode()
    t.root.count += 1
    t.node_count += 1
    with pytest.raises(InvariantError, match="invariant 2"):
        t.check()


def test_invariant_3_node_count():
    t = three_level_tree()
    t.node_count -= 1
    with pytest.raises(InvariantError, match="invariant 3"):
        t.check()


def test_invariant_4_item_count():
    t = three_level_tree()
    t.count += 1
    with pytest.raises(InvariantError, match="invariant 4"):
        t.check()


def test_invariant_5_item_above_bottom_level():
    t = three_level_tree()
    t.root.slots[7] = "stray item"
    t.root.count += 1
    with pytest.raises(InvariantError, match="invariant 5"):
        t.check()


def test_invariant_5_node_at_bottom_level():
    t = three_level_tree()
    bottom = t.root.slots[0].slots[0]
    bottom.slots[9] = RadixNode()
    bottom.count += 1
    with pytest.raises(InvariantError, match="invariant 5"):
        t.check()


def test_invariant_5_index_beyond_u32():
    t = RadixTree()
    t.insert(0, 0)
    t.insert(MAX, MAX)
    t.check()
    top = t.root
    top.slots[4], top.slots[3] = top.slots[3], None  # MAX moves to 2**32 + 2**30 - 1
    with pytest.raises(InvariantError, match="invariant 5"):
        t.check()


def test_invariant_6_height_not_minimal():
    t = RadixTree()
    t.insert(0, "a")
    t.insert(5, "b")
    t.root.slots[5] = None
    t.root.count -= 1
    t.count -= 1
    with pytest.raises(InvariantError, match="invariant 6"):
        t.check()


def test_invariant_7_direct_root_above_height_0():
    t = RadixTree()
    t.insert(0, "a")
    t.height = 1
    with pytest.raises(InvariantError, match="invariant 7"):
        t.check()


def test_invariant_7_node_at_height_0():
    t = RadixTree()
    t.insert(5, "a")
    t.height = 0
    with pytest.raises(InvariantError, match="invariant 7"):
        t.check()


def test_invariant_7_height_out_of_range():
    t = RadixTree()
    t.height = 7
    with pytest.raises(InvariantError, match="invariant 7"):
        t.check()


# --- hypothesis --------------------------------------------------------------------------------

u32 = st.one_of(st.integers(0, 300), st.sampled_from(EDGES), st.integers(0, MAX))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), u32), max_size=60))
def test_hypothesis_ops_against_dict(ops):
    bill = Billing()
    t = bill.tree()
    model = {}
    for is_insert, i in ops:
        if is_insert:
            rc = t.insert(i, i)
            assert rc == (-errno.EEXIST if i in model else 0)
            model[i] = i
        else:
            assert t.delete(i) == model.pop(i, None)
        t.check()
        assert t.node_count == bill.live
    assert list(t.items()) == sorted(model.items())


class RadixMachine(RuleBasedStateMachine):
    """The tree beside a dict, with a node allocator that may refuse."""

    def __init__(self):
        super().__init__()
        self.bill = Billing()
        self.tree = self.bill.tree()
        self.model = {}

    @rule(index=u32, grant=st.one_of(st.none(), st.integers(0, 6)))
    def insert(self, index, grant):
        self.bill.budget = None if grant is None else self.bill.allocs + grant
        before = shape(self.tree)
        rc = self.tree.insert(index, ("v", index))
        if rc == -errno.ENOMEM:
            assert shape(self.tree) == before
        elif index in self.model:
            assert rc == -errno.EEXIST
        else:
            assert rc == 0
            self.model[index] = ("v", index)

    @rule(index=u32)
    def delete(self, index):
        assert self.tree.delete(index) == self.model.pop(index, None)

    @rule(index=u32)
    def lookup(self, index):
        assert self.tree.lookup(index) == self.model.get(index)

    @invariant()
    def consistent(self):
        self.tree.check()
        assert self.tree.node_count == self.bill.live
        assert len(self.tree) == len(self.model)


TestRadixStateful = RadixMachine.TestCase
TestRadixStateful.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
