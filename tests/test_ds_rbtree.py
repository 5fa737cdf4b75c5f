"""Tests for tmemref.ds.rbtree: oracle, seeded stress, named cases, corruption, stateful."""

import math
import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tmemref.ds import rbtree
from tmemref.ds.rbtree import CASES, RBNode, RBTree, rb_next, rb_prev
from tmemref.errors import InvariantError


def build(keys):
    t = RBTree()
    for k in keys:
        t.insert(k, f"v{k}")
    t.check()
    return t


def random_ops(seed, ops, key_space, tree=None):
    """Seeded, weighted insert/erase/find against a dict; check() after every mutation."""
    rng = random.Random(seed)
    t = tree if tree is not None else RBTree()
    model = {}
    for _ in range(ops):
        k = rng.randrange(key_space)
        action = rng.random()
        if action < 0.5:
            if k in model:
                with pytest.raises(KeyError):
                    t.insert(k)
            else:
                node = t.insert(k, -k)
                assert node.key == k and node.value == -k
                model[k] = -k
        elif action < 0.9:
            node = t.find(k)
            if k in model:
                assert node is not None and node.key == k
                t.erase(node)
                del model[k]
                assert node.parent is None and node.left is None and node.right is None
            else:
                assert node is None
        else:
            node = t.find(k)
            assert (node is not None) == (k in model)
            continue
        t.check()
        assert len(t) == len(model)
    assert [n.key for n in t] == sorted(model)
    assert [n.value for n in t] == [model[k] for k in sorted(model)]
    return t, model


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_against_dict(seed):
    random_ops(seed, 3000, key_space=400)


def test_random_tuple_keys_like_oids():
    rng = random.Random(7)
    t = RBTree()
    model = set()
    for _ in range(2000):
        oid = (rng.randrange(3), rng.randrange(4), rng.randrange(2**64))
        if oid in model or (model and rng.random() < 0.4):
            victim = rng.choice(sorted(model))
            t.erase(t.find(victim))
            model.discard(victim)
        else:
            t.insert(oid, None)
            model.add(oid)
        t.check()
    assert [n.key for n in t] == sorted(model)


def test_empty_tree():
    t = RBTree()
    t.check()
    assert len(t) == 0 and list(t) == [] and t.height() == 0
    assert t.first() is None and t.last() is None and t.find(1) is None


def test_first_last_next_prev():
    t = build([5, 3, 8, 1, 4, 7, 9])
    assert t.first().key == 1 and t.last().key == 9
    keys, node = [], t.first()
    while node is not None:
        keys.append(node.key)
        node = rb_next(node)
    assert keys == [1, 3, 4, 5, 7, 8, 9]
    keys, node = [], t.last()
    while node is not None:
        keys.append(node.key)
        node = rb_prev(node)
    assert keys == [9, 8, 7, 5, 4, 3, 1]


def test_duplicate_insert_raises_and_leaves_tree():
    t = build([1, 2, 3])
    with pytest.raises(KeyError):
        t.insert(2, "other")
    t.check()
    assert len(t) == 3 and t.find(2).value == "v2"


def test_erase_foreign_node_raises():
    t = build([1, 2, 3])
    with pytest.raises(ValueError):
        t.erase(RBNode(2))
    t.check()


def test_erase_all_from_list_snapshot():
    t = build(range(100))
    for node in list(t):
        t.erase(node)
        t.check()
    assert t.root is None and len(t) == 0


def test_height_bound():
    t = RBTree()
    for k in range(4096):  # ascending inserts: the worst case for an unbalanced tree
        t.insert(k)
    t.check()
    assert t.height() <= 2 * math.log2(len(t) + 1)
    for k in range(0, 4096, 2):
        t.erase(t.find(k))
    t.check()
    assert t.height() <= 2 * math.log2(len(t) + 1)


def test_every_case_is_hit():
    seen = set()
    t = RBTree()
    t.trace = seen.add
    random_ops(11, 2000, key_space=200, tree=t)
    assert seen == set(CASES)


def test_case_names_are_exported_and_distinct():
    assert len(set(CASES)) == len(CASES) == 10
    for name in rbtree.__all__:
        assert hasattr(rbtree, name)
    exported = {getattr(rbtree, n) for n in rbtree.__all__ if n.isupper() and n != "CASES"}
    assert exported == set(CASES)


def test_trace_is_called_before_the_change():
    t = RBTree()
    states = []
    t.trace = lambda case: states.append((case, t.root.key, t.root.red))
    t.insert(1)
    assert states == [(rbtree.INSERT_ROOT, 1, True)]  # linked, not yet painted black
    assert t.root.red is False
    states.clear()
    t.insert(2)
    t.insert(3)
    # Before the outer rotation the root is still 1; afterwards it is 2.
    assert states == [(rbtree.INSERT_ROTATE_OUTER, 1, False)]
    assert t.root.key == 2


def test_trace_none_is_default():
    assert RBTree().trace is None


# --- one corruption per numbered property ---------------------------------------------------


def test_invariant_1_colour():
    t = build([1, 2, 3])
    t.find(1).red = "pink"
    with pytest.raises(InvariantError, match="invariant 1"):
        t.check()


def test_invariant_2_root_red():
    t = build([1])
    t.root.red = True
    with pytest.raises(InvariantError, match="invariant 2"):
        t.check()


def test_invariant_3_red_red():
    t = build([1, 2, 3])  # 2 black, 1 and 3 red
    child = RBNode(0)  # red
    one = t.find(1)
    one.left = child
    child.parent = one
    t.count += 1
    with pytest.raises(InvariantError, match="invariant 3"):
        t.check()


def test_invariant_4_black_height():
    t = build(range(20))
    red = next(n for n in t if n.red)
    red.red = False
    with pytest.raises(InvariantError, match="invariant 4"):
        t.check()


def test_invariant_5_swapped_keys():
    t = build(range(10))
    a, b = t.find(3), t.find(6)
    a.key, b.key = b.key, a.key
    with pytest.raises(InvariantError, match="invariant 5"):
        t.check()


def test_invariant_6_parent_pointer():
    t = build(range(10))
    node = t.find(0)
    node.parent = t.root if node.parent is not t.root else t.find(9)
    with pytest.raises(InvariantError, match="invariant 6"):
        t.check()


def test_invariant_6_root_parent():
    t = build(range(3))
    t.root.parent = t.find(0)
    with pytest.raises(InvariantError, match="invariant 6"):
        t.check()


def test_invariant_6_stops_a_loop():
    t = build(range(10))
    leaf = t.first()
    leaf.left = t.root  # a cycle through child links; must not recurse forever
    with pytest.raises(InvariantError, match="invariant 6"):
        t.check()


def test_invariant_7_count():
    t = build(range(5))
    t.count += 1
    with pytest.raises(InvariantError, match="invariant 7"):
        t.check()


# --- hypothesis: the tree beside a plain set ----------------------------------------------


class RBTreeMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.tree = RBTree()
        self.model = {}

    @rule(key=st.integers(-50, 50), value=st.integers())
    def insert(self, key, value):
        if key in self.model:
            with pytest.raises(KeyError):
                self.tree.insert(key, value)
        else:
            self.tree.insert(key, value)
            self.model[key] = value

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def erase(self, data):
        key = data.draw(st.sampled_from(sorted(self.model)))
        self.tree.erase(self.tree.find(key))
        del self.model[key]

    @rule(key=st.integers(-50, 50))
    def find(self, key):
        node = self.tree.find(key)
        assert (node.value if node else None) == self.model.get(key)

    @invariant()
    def consistent(self):
        self.tree.check()
        assert [(n.key, n.value) for n in self.tree] == sorted(self.model.items())


TestRBTreeStateful = RBTreeMachine.TestCase
TestRBTreeStateful.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
