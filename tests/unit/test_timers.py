from hypothesis import given, settings
from hypothesis import strategies as st

from actors.hosts.timers import ExpiryHeap


def test_empty_heap_has_nothing_due():
    heap = ExpiryHeap()
    assert len(heap) == 0
    assert heap.next_deadline() is None
    assert heap.due(1e12) == []


def test_due_returns_passed_deadlines_earliest_first_and_each_once():
    heap = ExpiryHeap()
    heap.schedule("c", 30.0)
    heap.schedule("a", 10.0)
    heap.schedule("b", 20.0)
    assert heap.next_deadline() == 10.0
    assert heap.due(5.0) == []
    assert heap.due(20.0) == ["a", "b"]  # a deadline equal to now has passed
    assert heap.due(20.0) == []
    assert len(heap) == 1
    assert heap.next_deadline() == 30.0


def test_rescheduling_later_replaces_the_earlier_deadline():
    heap = ExpiryHeap()
    heap.schedule("a", 10.0)
    heap.schedule("a", 50.0)
    assert len(heap) == 1
    assert heap.next_deadline() == 50.0
    assert heap.due(40.0) == []
    assert heap.due(50.0) == ["a"]


def test_rescheduling_earlier_replaces_the_later_deadline():
    heap = ExpiryHeap()
    heap.schedule("a", 50.0)
    heap.schedule("a", 10.0)
    assert heap.next_deadline() == 10.0
    assert heap.due(10.0) == ["a"]
    assert heap.due(100.0) == []
    assert heap.next_deadline() is None


def test_rescheduling_back_to_an_old_deadline_fires_once():
    heap = ExpiryHeap()
    heap.schedule("a", 10.0)
    heap.schedule("a", 20.0)
    heap.schedule("a", 10.0)
    assert heap.due(100.0) == ["a"]


def test_cancel_removes_the_deadline():
    heap = ExpiryHeap()
    heap.schedule("a", 10.0)
    heap.schedule("b", 20.0)
    heap.cancel("a")
    heap.cancel("unknown")
    assert len(heap) == 1
    assert heap.next_deadline() == 20.0
    assert heap.due(100.0) == ["b"]


def test_many_identities_expire_in_deadline_order():
    heap = ExpiryHeap()
    timers = [(float((n * 7919) % 10_000), f"sip:user{n}@example.com") for n in range(10_000)]
    for at, identity in timers:
        heap.schedule(identity, at)
    expected = [identity for _, identity in sorted(timers)]
    assert heap.due(4_999.0) == expected[:5_000]
    assert heap.due(1e9) == expected[5_000:]


def test_repeated_rescheduling_keeps_the_heap_small():
    heap = ExpiryHeap()
    for round_ in range(1_000):
        for i in range(100):
            heap.schedule(f"u{i}", 1_000.0 + round_)
    assert len(heap) == 100
    assert len(heap._heap) <= 2 * 100 + 64 + 1


identities = st.sampled_from([f"u{i}" for i in range(8)])
deadlines = st.integers(0, 50).map(float)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), identities, deadlines),
        st.tuples(st.just("cancel"), identities),
        st.tuples(st.just("due"), deadlines),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_behaves_like_a_dict_of_deadlines(ops):
    heap, model = ExpiryHeap(), {}
    for op in ops:
        if op[0] == "schedule":
            heap.schedule(op[1], op[2])
            model[op[1]] = op[2]
        elif op[0] == "cancel":
            heap.cancel(op[1])
            model.pop(op[1], None)
        else:
            now = op[1]
            passed = sorted((at, i) for i, at in model.items() if at <= now)
            assert heap.due(now) == [i for _, i in passed]
            for _, i in passed:
                del model[i]
        assert len(heap) == len(model)
        assert heap.next_deadline() == (min(model.values()) if model else None)
