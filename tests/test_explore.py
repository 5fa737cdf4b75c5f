"""The deterministic scheduler (tmemref.sim.sched) and the explorer (tmemref.sim.explore): toy
programs with known bugs, the shipped scenarios' verdicts, replay, determinism across workers
and executors (a process pool, dask.distributed), and the command line."""
import re
import subprocess
import sys
from functools import partial

import pytest

from tmemref.errors import InvariantError
from tmemref.host import locks
from tmemref.host.locks import SpinLock, yield_point
from tmemref.sim.explore import explore, main, pct, replay
from tmemref.sim.races import SCENARIOS, guard_world, lock_leak_world, pool_lookup_world
from tmemref.sim.sched import Finding, Scenario, Scheduler, World, decode, encode, run

EXPECTED = {"naive-evict": "deadlock", "evict": "none", "no-guard": "livelock", "guard": "none",
            "counters": "drift", "pool-lookup-race": "invariant", "lock-leak": "exception"}


# --- toy programs (module level, so worker processes can unpickle them) -------------------------
def _ab_ba():
    """Two locks taken in opposite orders."""
    a, b = SpinLock("a", 1), SpinLock("b", 1)

    def ab():
        with a, b:
            pass

    def ba():
        with b, a:
            pass
    return World((("t0", (("ab", ab),)), ("t1", (("ba", ba),))))


def _counter(locked: bool):
    """Two increments of one counter, read and written around a yield point."""
    lock, box = SpinLock("c", 1), [0]

    def inc():
        if locked:
            lock.acquire()
        n = box[0]
        yield_point("box")
        box[0] = n + 1
        if locked:
            lock.release()

    def final(results):
        if box[0] != 2:
            raise Finding("drift", f"box is {box[0]} after 2 increments")
    return World((("t0", (("inc", inc),)), ("t1", (("inc", inc),))), final=final)


def _racy():
    return _counter(False)


def _locked():
    return _counter(True)


AB_BA = Scenario("ab-ba", _ab_ba)
RACY = Scenario("racy", _racy)
LOCKED = Scenario("locked", _locked)


def _one_thread(fn, **world):
    return Scenario("one", lambda: World((("t0", (("op", fn),)),), **world))


# --- the scheduler on toys ----------------------------------------------------------------------
def test_opposite_orders_deadlock_with_cycle():
    assert run(AB_BA).failure is None                     # t0 alone first: fine
    r = explore(AB_BA, 0, workers=1)
    assert (r.schedules, r.verdict) == (2, "none")        # no preemption: no deadlock
    r = explore(AB_BA, 1, workers=1)
    f = r.failure
    assert f.kind == "deadlock"
    assert f.cycle == (("t0", "b#1", "t1"), ("t1", "a#0", "t0"))     # t0 took a, t1 took b
    again = replay(AB_BA, f.schedule)
    assert (again.failure.kind, again.failure.cycle, again.steps) == (f.kind, f.cycle, f.steps)


def test_yield_point_counter_drifts_and_the_lock_fixes_it():
    r = explore(RACY, 1, workers=1)
    assert r.verdict == "drift" and "box is 1" in r.failure.message
    assert replay(RACY, r.failure.schedule).failure.message == r.failure.message
    assert explore(LOCKED, 3, workers=1).verdict == "none"
    assert run(RACY).failure is None                      # the default schedule is not enough


def test_leak_exception_lock_order_invariant_and_livelock():
    a = SpinLock("x", 3)
    assert run(_one_thread(lambda: a.acquire())).failure.kind == "leak"
    f = run(_one_thread(lambda: int("nope"))).failure
    assert f.kind == "exception" and "ValueError" in f.message and "'op'" in f.message

    hi, lo = SpinLock("hi", 5), SpinLock("lo", 1)

    def inverted():
        with hi, lo:
            pass
    assert run(_one_thread(inverted)).failure.kind == "lock-order"

    state = {"x": 0, "y": 0}
    lock = SpinLock("s", 1)

    def check():
        if state["x"] != state["y"]:
            raise InvariantError(f"x {state['x']} != y {state['y']}")

    def two_steps():                                     # quiescent between the two sections
        with lock:
            state["x"] += 1
        with lock:
            state["y"] += 1
    f = run(_one_thread(two_steps, check=check)).failure
    assert f.kind == "invariant" and "x 1 != y 0" in f.message

    def grab(mine, other):                               # each spins for the other's lock
        def go():
            mine.acquire()
            while not other.trylock():
                pass
        return go
    p, q = SpinLock("p", 1), SpinLock("q", 1)
    spin = Scenario("spin", lambda: World((("t0", (("pq", grab(p, q)),)),
                                           ("t1", (("qp", grab(q, p)),)))), livelock_steps=50)
    f = run(spin, "aab").failure
    assert f.kind == "livelock" and "trylocks" in f.message


def test_a_spinning_trylock_does_not_starve_the_holder():
    def build():
        lock = SpinLock("l", 1)

        def spin():
            while not lock.trylock():
                pass
            lock.release()

        def hold():
            lock.acquire()
            yield_point("work")
            yield_point("more work")
            lock.release()
        return World((("spinner", (("spin", spin),)), ("holder", (("hold", hold),))))
    r = explore(Scenario("fair", build, livelock_steps=30), 3, workers=1)
    assert r.verdict == "none" and r.schedules > 3


def test_a_thread_blocked_outside_the_scheduler_is_reported_stuck():
    import threading
    gate = threading.Event()
    r = Scheduler(_one_thread(gate.wait), stuck_seconds=0.3).run()
    gate.set()
    assert r.failure.kind == "stuck" and "in wait" in r.failure.message    # t0's stack
    assert locks._sched is None


def test_held_and_held_locks_follow_the_model_and_the_hook_is_removed():
    before = (locks.SpinLock.acquire, locks.RWLock.read_lock, locks.SpinLock.held)
    seen = []
    a = SpinLock("a", 1)

    def probe():
        with a:
            seen.append((a.held, [l.name for l in locks.held_locks()]))
        seen.append((a.held, locks.held_locks()))
    assert run(_one_thread(probe)).failure is None
    assert seen == [(True, ["a"]), (False, [])]
    assert locks._sched is None
    assert (locks.SpinLock.acquire, locks.RWLock.read_lock, locks.SpinLock.held) == before
    a.acquire()                                          # the threading path again
    assert a.held and not a.trylock()
    a.release()


def test_install_refuses_an_unrouted_operation(monkeypatch):
    monkeypatch.setattr(locks.RWLock, "read_peek", lambda self: 0, raising=False)
    before = locks.SpinLock.acquire
    with pytest.raises(RuntimeError, match="read_peek"):
        locks.install_scheduler(object())
    assert locks._sched is None and locks.SpinLock.acquire is before


def test_schedule_text_round_trips_and_mismatches_are_reported():
    for choices in [(), (0,), (1, 1, 0, 2, 2, 2), (0,) * 12 + (1,)]:
        assert decode(encode(choices)) == choices
    with pytest.raises(ValueError):
        decode("a1b?")
    assert replay(AB_BA, "b" * 20).failure.kind == "mismatch"


def _corrupt_1(s, lock):
    s.state[lock].writer, s.state[lock].readers = 0, {1: 1}


def _corrupt_3(s, lock):
    s.state[lock].writer, s.nheld = 0, 1


@pytest.mark.parametrize("n, corrupt", [
    (1, _corrupt_1),
    (2, lambda s, lock: setattr(s, "nheld", 1)),
    (3, _corrupt_3),
    (4, lambda s, lock: setattr(s.cpus[0], "pending", ("op", "again"))),
    (5, lambda s, lock: setattr(s, "preemptions", s.steps + 1)),
])
def test_scheduler_model_invariants(n, corrupt):
    s = Scheduler(SCENARIOS["evict"], check_model=True)    # check() after every lock operation
    assert s.run().failure is None
    s.check()
    corrupt(s, next(iter(s.state)))
    with pytest.raises(InvariantError, match=f"scheduler invariant {n}"):
        s.check()


def test_the_model_holds_in_every_scenario():
    for name, scenario in SCENARIOS.items():
        checked, plain = Scheduler(scenario, check_model=True).run(), run(scenario)
        assert repr(checked.failure) == repr(plain.failure), name


# --- the shipped scenarios ----------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXPECTED))
def test_scenario_verdict_and_replay(name):
    r = explore(name, 2, workers=1)
    assert r.verdict == EXPECTED[name], r.failure
    for k, reduce in ((1, True), (1, False)):              # the reduction changes no verdict
        assert explore(name, k, reduce=reduce, workers=1).verdict == EXPECTED[name]
    if r.failure is None:
        return
    f = r.failure
    again = replay(name, f.schedule)
    assert (again.failure.kind, again.failure.message, again.steps) == (f.kind, f.message, f.steps)
    assert again.choices == f.choices


def test_scenarios_fail_for_the_right_reasons():
    f = explore("naive-evict", 2, workers=1).failure
    waits = {t: w for t, w, _ in f.cycle}
    assert waits == {"evictor": "obj_spinlock[dom1 oid 1]",
                     "dom1": "pool_rwlock[dom1 pool 0] (write)"}
    f = explore("no-guard", 1, workers=1).failure
    assert re.search(r"\d+x obj_spinlock\[dom1 oid 1\]", f.message)
    assert re.search(r"\d+x obj_spinlock\[dom2 oid 2\]", f.message)
    recursing = Scenario("guard, recursing", partial(guard_world, True, True), livelock_spins=16)
    assert explore(recursing, 2, workers=1).verdict == "none"     # the guard alone ends it
    f = explore("pool-lookup-race", 2, workers=1).failure
    assert "global obj/pgp/node/page counts 1/1/0/1 but the structures hold 0/0/0/0" in f.message
    f = explore("lock-leak", 2, workers=1).failure
    assert "ValueError" in f.message and "still holds obj_spinlock[dom1 oid 1]" in f.message
    f = explore("counters", 2, workers=1).failure
    puts, good = map(int, re.search(r"pool.puts (\d+), pool.good_puts (\d+)", f.message).groups())
    assert puts < 2 or good < 2
    assert "pool.pgp_count 2, global_pgp_count 2" in f.message    # the atomic ones are exact


@pytest.mark.parametrize("world", [pool_lookup_world, lock_leak_world])
def test_the_real_code_is_clean_in_the_buggy_variants_workloads(world):
    real = Scenario("real", partial(world, False))
    assert explore(real, 2, workers=1).verdict == "none"


def test_sleep_sets_cut_schedules_and_counts_are_deterministic():
    full = explore("evict", 2, reduce=False, workers=1)
    cut = explore("evict", 2, workers=1)
    assert cut.verdict == full.verdict == "none"
    assert cut.schedules - cut.pruned < full.schedules
    again = explore("evict", 2, workers=1)
    assert (again.schedules, again.pruned, again.max_steps) == \
        (cut.schedules, cut.pruned, cut.max_steps)


def test_pct_finds_the_deadlock_deterministically():
    r = pct("naive-evict", 100, workers=1)
    assert r.verdict == "deadlock"
    again = pct("naive-evict", 100, workers=1)
    assert (again.failing, again.failure.choices) == (r.failing, r.failure.choices)
    assert replay("naive-evict", r.failure.schedule).failure.kind == "deadlock"
    assert pct("evict", 40, workers=1).verdict == "none"


def _same(a, b):
    return (a.schedules, a.pruned, a.failing, a.kinds, a.failure.choices, a.failure.message) == \
        (b.schedules, b.pruned, b.failing, b.kinds, b.failure.choices, b.failure.message)


def test_process_pool_and_dask_agree_with_inline():
    from distributed import Client, LocalCluster
    inline = explore("counters", 2, workers=1)
    assert _same(explore("counters", 2, workers=2), inline)
    with LocalCluster(processes=False, n_workers=2, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert _same(explore("counters", 2, executor=client.get_executor()), inline)
        assert _same(pct("counters", 60, executor=client.get_executor()),
                     pct("counters", 60, workers=1))


# --- the command line ---------------------------------------------------------------------------
def test_cli_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    assert main(["pool-lookup-race", "--workers", "1"]) == 1
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["pool-lookup-race", "--workers", "1"]) == 1
    assert "schedules" in capsys.readouterr().err


def test_cli_exit_codes_and_last_line(capsys):
    assert main(["naive-evict", "--workers", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\d+ schedules( \(\d+ cut short by sleep sets\))?, [\d.]+ s, "
                        r"verdict: deadlock", out[-1])
    schedule = re.search(r"--replay (\S+)", "\n".join(out)).group(1)
    assert main(["naive-evict", "--replay", schedule]) == 1
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"1 schedule, [\d.]+ s, verdict: deadlock", out[-1])
    assert main(["explore", "evict", "--workers", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("verdict: none within 2 preemptions")
    assert main(["counters", "--random", "40", "--workers", "1"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].endswith("verdict: drift")
    with pytest.raises(SystemExit):
        main(["evict", "--replay", "not a schedule"])


def test_module_entry_point():
    p = subprocess.run([sys.executable, "-m", "tmemref.sim.explore", "pool-lookup-race",
                        "--workers", "1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert p.stdout.splitlines()[-1].endswith("verdict: invariant")
    assert p.stderr == ""                                 # no progress bar off a terminal


def test_python_dash_m_tmemref_explore_as_a_user_runs_it():
    """The command line exactly as documented, in a fresh interpreter: exit 1 with the schedule
    to replay on a failure, that schedule replays to the same verdict, exit 0 when clean."""
    import subprocess
    import sys

    def run(*args):
        p = subprocess.run([sys.executable, "-m", "tmemref", "explore", *args],
                           capture_output=True, text=True, timeout=300)
        return p.returncode, p.stdout.splitlines()

    rc, out = run("naive-evict", "--preemptions", "1", "--workers", "1")
    assert rc == 1 and out[-1].endswith("verdict: deadlock")
    schedule = next(line.split("--replay ")[1] for line in out if "--replay " in line)
    rc, out = run("naive-evict", "--replay", schedule)
    assert rc == 1 and out[-1].endswith("verdict: deadlock")
    rc, out = run("evict", "--preemptions", "1", "--workers", "1")
    assert rc == 0 and out[-1].endswith("verdict: none within 1 preemptions")
