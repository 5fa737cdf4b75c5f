"""Simulations on top of the engine: deterministic workloads and the experiments that replay them.

* :mod:`.workloads` — :class:`~.workloads.Workload` and its generators (:func:`~.workloads.zipf`,
  :func:`~.workloads.scan`, :func:`~.workloads.swamp`, :func:`~.workloads.interleave`,
  :func:`~.workloads.concat`), seeded numpy ``Generator`` only;
* :mod:`.experiments` — runners that replay a workload against a fresh
  :class:`~tmemref.Host` through ``do_tmem_op`` and return numbers (:func:`~.experiments.hit_ratio`,
  :func:`~.experiments.memory_curve`, :func:`~.experiments.weights_experiment`,
  :func:`~.experiments.evictions_per_put`, :func:`~.experiments.locked_walk`) and the
  oracle they are compared with (:func:`~.experiments.lru_hits`, a textbook LRU cache);
* :mod:`.sched` — a deterministic scheduler running the engine in several threads one at a
  time, switching at lock operations and yield points (a schedule names each interleaving);
* :mod:`.explore` — exhaustive preemption-bounded and randomised (PCT) search over schedules,
  through any ``concurrent.futures.Executor``, and the ``explore`` command line;
* :mod:`.races` — the named scenarios it runs (eviction deadlock, the guard's livelock, counter
  drift, and two buggy variants of the lock protocol). These three are not imported here.
* :mod:`.dedup` — deduplication and trailing zeros on real file pages, the second chance, and
  a model of deduplicated persistent pages (imported on its own).

The engine never imports this package.

>>> from tmemref.sim import hit_ratio, scan
>>> hit_ratio(1024, scan(1800, 40, 25), warmup=1000)    # a 1000-page loop: LRU keeps none
0.0
"""
from .experiments import (Bench, evictions_per_put, held_elsewhere, hit_ratio, hit_ratio_curve,
                          locked_walk, lru_hits, lru_order, make_bench, memory_curve,
                          quota_truth_table, replay, set_weight, weights_experiment)
from .workloads import Workload, concat, interleave, scan, swamp, zipf, zipf_probabilities

__all__ = ["Bench", "Workload", "concat", "evictions_per_put", "held_elsewhere", "hit_ratio",
           "hit_ratio_curve", "interleave", "locked_walk", "lru_hits", "lru_order", "make_bench",
           "memory_curve", "quota_truth_table", "replay", "scan", "set_weight", "swamp",
           "weights_experiment", "zipf", "zipf_probabilities"]
