"""Tests for tmemref.ds.dlist: oracle against Python lists, corruption, bad use."""

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tmemref.ds.dlist import (
    Head2,
    ListHead,
    ListHead2,
    list2_add_tail,
    list2_del,
    list2_linked,
    list2_move_tail,
    list_add,
    list_add_tail,
    list_check,
    list_del,
    list_empty,
    list_iter,
    list_len,
    list_linked,
    list_move_tail,
    list_owners,
)
from tmemref.errors import InvariantError


def make(n, head=None):
    head = head if head is not None else ListHead()
    nodes = [ListHead(i) for i in range(n)]
    for node in nodes:
        list_add_tail(node, head)
    list_check(head, count=n)
    return head, nodes


def test_empty_head_and_unlinked_node():
    head = ListHead()
    assert list_empty(head) and list_len(head) == 0 and list(list_iter(head)) == []
    assert not list_linked(ListHead("x"))
    list_check(head, count=0)


def test_order_of_add_and_add_tail():
    head = ListHead()
    a, b, c, d = (ListHead(x) for x in "abcd")
    list_add_tail(a, head)
    list_add(b, head)
    list_add_tail(c, head)
    list_add(d, head)
    assert list(list_owners(head)) == ["d", "b", "a", "c"]
    assert [n.owner for n in list_iter(head)] == ["d", "b", "a", "c"]
    assert head.next is d and head.prev is c
    list_check(head, count=4)


def test_del_reinitialises_and_is_idempotent():
    head, nodes = make(3)
    list_del(nodes[1])
    assert nodes[1].next is nodes[1] and nodes[1].prev is nodes[1]
    assert not list_linked(nodes[1])
    list_del(nodes[1])  # not on a list: nothing happens
    list_check(head, count=2)
    list_add(nodes[1], head)  # re-added at once
    assert list(list_owners(head)) == [1, 0, 2]


def test_move_tail_within_and_between_lists():
    head, nodes = make(3)
    other = ListHead()
    list_move_tail(nodes[0], head)
    assert list(list_owners(head)) == [1, 2, 0]
    list_move_tail(nodes[2], other)
    assert list(list_owners(head)) == [1, 0] and list(list_owners(other)) == [2]
    list_move_tail(ListHead("new"), other)  # an unlinked node is simply added
    assert list(list_owners(other)) == [2, "new"]
    list_check(head, count=2)
    list_check(other, count=2)


def test_double_add_raises():
    head, nodes = make(2)
    with pytest.raises(ValueError):
        list_add(nodes[0], head)
    with pytest.raises(ValueError):
        list_add_tail(nodes[0], ListHead())
    list_check(head, count=2)


def test_iter_survives_deleting_the_yielded_node():
    head, nodes = make(10)
    for node in list_iter(head):
        if node.owner % 3 == 0:
            list_del(node)
    assert list(list_owners(head)) == [1, 2, 4, 5, 7, 8]
    for owner in list_owners(head):
        list_del(nodes[owner])
    assert list_empty(head)


def test_random_against_python_lists():
    """Seeded, weighted actions over two lists (like a global and a per-client LRU list)."""
    rng = random.Random(3)
    heads = [ListHead(), ListHead()]
    models = [[], []]
    nodes = [ListHead(i) for i in range(60)]
    where = {}  # owner -> list number
    for _ in range(4000):
        node = rng.choice(nodes)
        which = rng.randrange(2)
        r = rng.random()
        if node.owner in where:
            models[where[node.owner]].remove(node.owner)
            if r < 0.5:
                list_del(node)
                del where[node.owner]
            else:
                list_move_tail(node, heads[which])
                models[which].append(node.owner)
                where[node.owner] = which
        elif r < 0.5:
            list_add(node, heads[which])
            models[which].insert(0, node.owner)
            where[node.owner] = which
        else:
            list_add_tail(node, heads[which])
            models[which].append(node.owner)
            where[node.owner] = which
        for head, model in zip(heads, models):
            list_check(head, count=len(model))
            assert list(list_owners(head)) == model
        assert list_linked(node) == (node.owner in where)


# --- one corruption per numbered invariant ----------------------------------------------------


def test_invariant_1_prev_pointer():
    head, nodes = make(4)
    nodes[2].prev = head
    with pytest.raises(InvariantError, match="invariant 1"):
        list_check(head)


def test_invariant_1_next_skips_a_node():
    head, nodes = make(4)
    nodes[0].next = nodes[2]  # link a node's next to the wrong node
    with pytest.raises(InvariantError, match="invariant 1"):
        list_check(head, count=3)


def test_invariant_2_loop_without_head():
    head, nodes = make(4)
    nodes[3].next = nodes[1]  # the forward walk would circle 1-2-3 for ever
    with pytest.raises(InvariantError, match="invariant 2"):
        list_check(head)


def test_invariant_2_broken_link():
    head, nodes = make(3)
    nodes[1].next = None
    with pytest.raises(InvariantError, match="invariant 2"):
        list_check(head)


def test_invariant_3_count():
    head, _ = make(5)
    with pytest.raises(InvariantError, match="invariant 3"):
        list_check(head, count=4)


def test_check_names_the_list():
    head, _ = make(1)
    with pytest.raises(InvariantError, match="eph list invariant 3"):
        list_check(head, count=0, name="eph list")


# --- hypothesis --------------------------------------------------------------------------------


class DListMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.head = ListHead()
        self.model = []
        self.nodes = [ListHead(i) for i in range(8)]

    @rule(i=st.integers(0, 7), front=st.booleans())
    def add(self, i, front):
        node = self.nodes[i]
        if list_linked(node):
            with pytest.raises(ValueError):
                list_add(node, self.head)
            return
        if front:
            list_add(node, self.head)
            self.model.insert(0, i)
        else:
            list_add_tail(node, self.head)
            self.model.append(i)

    @rule(i=st.integers(0, 7))
    def delete(self, i):
        list_del(self.nodes[i])
        if i in self.model:
            self.model.remove(i)

    @rule(i=st.integers(0, 7))
    def move_tail(self, i):
        list_move_tail(self.nodes[i], self.head)
        if i in self.model:
            self.model.remove(i)
        self.model.append(i)

    @invariant()
    def consistent(self):
        list_check(self.head, count=len(self.model))
        assert list(list_owners(self.head)) == self.model
        assert list_len(self.head) == len(self.model)
        assert list_empty(self.head) == (not self.model)


TestDListStateful = DListMachine.TestCase
TestDListStateful.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)


# --- the second pair of links ------------------------------------------------------------------

def test_a_node_on_two_lists_moves_on_each_independently():
    h1, h2 = ListHead(), Head2()
    nodes = [ListHead2(i) for i in range(4)]
    for n in nodes:
        list_add_tail(n, h1)
        list2_add_tail(n, h2)
    list2_move_tail(nodes[0], h2)                # only the second list changes order
    list_del(nodes[3])                           # only the first list loses it
    assert list(list_owners(h1)) == [0, 1, 2]
    assert list(list_owners(h2)) == [1, 2, 3, 0]
    assert list_linked(nodes[3]) is False and list2_linked(nodes[3]) is True
    list_check(h1, count=3)
    list_check(h2, count=4)
    assert list_len(h2) == 4 and not list_empty(h2)
    for n in nodes:
        list2_del(n)
    assert list_empty(h2) and list(list_owners(h1)) == [0, 1, 2]
    list2_add_tail(nodes[1], h2)
    with pytest.raises(ValueError):              # already on a second list
        list2_add_tail(nodes[1], h2)


def test_a_broken_second_ring_is_reported_and_the_first_is_not_blamed():
    h1, h2 = ListHead(), Head2()
    a, b = ListHead2("a"), ListHead2("b")
    for n in (a, b):
        list_add_tail(n, h1)
        list2_add_tail(n, h2)
    a.next2 = h2                                 # b is skipped going forwards on list 2
    list_check(h1, count=2)
    with pytest.raises(InvariantError, match="invariant 1: node 'a''s next does not link back"):
        list_check(h2)
    a.next2 = a                                  # a loop that never returns to the head
    with pytest.raises(InvariantError, match="invariant 2"):
        list_check(h2)
    h3 = Head2()
    list2_add_tail(ListHead2("x"), h3)
    h3.next2.next2 = ListHead("plain")           # a node without second links
    with pytest.raises(InvariantError, match="not a ListHead"):
        list_check(h3)
