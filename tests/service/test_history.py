"""The history: the retention rule, and the snapshot aggregation keeps per applied object."""

from __future__ import annotations

import random
from itertools import pairwise
from types import SimpleNamespace

import pytest

from abtest import history
from abtest.history import kept, kept_seqs, thinned_by, variant_estimate
from abtest.usecases.aggregate import Aggregate
from abtest.usecases.history import HistoryQuery, ShowHistory
from tests.service.doubles import ENDPOINT, config
from tests.service.test_aggregate_and_stats import simulate


@pytest.mark.parametrize("recent", [1, 3, 8])
def test_each_write_drops_exactly_what_the_rule_no_longer_keeps(recent, monkeypatch):
    monkeypatch.setattr(history, "RECENT", recent)
    alive: set[int] = set()
    for latest in range(1, 1500):
        alive.add(latest)
        for dropped in thinned_by(latest):
            assert dropped in alive  # never named twice, never one that was not there
            alive.remove(dropped)
        assert alive == {s for s in range(1, latest + 1) if kept(s, latest)}
        assert kept_seqs(latest, 10**9) == sorted(alive, reverse=True)
        assert kept_seqs(latest, 5) == sorted(alive, reverse=True)[:5]


def test_a_long_experiment_keeps_its_arc_in_bounded_space():
    latest = 1_000_000  # a minute's aggregation for two years
    seqs = kept_seqs(latest, 10**9)
    assert len(seqs) < history.RECENT + history.RECENT // 2 * 14
    assert seqs[: history.RECENT] == list(range(latest, latest - history.RECENT, -1))
    assert seqs[-1] == 1
    # Ever coarser further back, with no gap wider than its age over RECENT / 2 or so.
    for newer, older in pairwise(seqs):
        assert newer - older <= max(1, 2 * (latest - older) // history.RECENT + 1)


def test_the_estimate_falls_back_to_the_posterior_until_the_statistics_name_it():
    posterior = {"posterior_mean": 0.2, "credible_interval": [0.1, 0.3]}
    assert variant_estimate(posterior) == (0.2, [0.1, 0.3])
    named = {**posterior, "estimate": 0.25, "estimate_interval": [0.2, 0.31]}
    assert variant_estimate(named) == (0.25, [0.2, 0.31])
    assert variant_estimate({}) == (None, None)


def test_each_applied_object_leaves_one_snapshot_of_what_stats_says(usecases, log, ports):
    show = ShowHistory.from_ports(ports)
    for round_ in range(3):
        simulate(usecases, random.Random(round_), 40, {"Champion1": 0.2, "Challenger1": 0.6})
        key = log.deliver()
        usecases.aggregate(log, key)
        usecases.aggregate(log, key)  # a redelivery adds nothing

    snapshots = show(HistoryQuery(ENDPOINT, 10)).snapshots
    assert [s.seq for s in snapshots] == [1, 2, 3]
    assert [sum(v.invocation_count for v in s.variants) for s in snapshots] == [40, 80, 120]
    stats = usecases.stats(ENDPOINT)
    last = snapshots[-1]
    by_name = {v["variant_name"]: v for v in stats.decision["variants"]}
    for v in last.variants:
        assert v.allocation == stats.allocation[v.variant_name]
        assert v.probability_best == by_name[v.variant_name]["probability_best"]
        estimate, interval = variant_estimate(by_name[v.variant_name])
        assert (v.estimate, list(v.estimate_interval)) == (estimate, interval)
    assert last.reason == stats.decision["reason"] and last.winner == stats.decision["winner"]


def test_a_repeat_fills_in_a_snapshot_a_crash_left_out(usecases, log, ports, monkeypatch):
    simulate(usecases, random.Random(5), 20, {"Champion1": 0.5, "Challenger1": 0.5})
    key = log.deliver()
    store = ports.history

    def crash(*args, **kwargs):
        raise OSError("the process died here")

    monkeypatch.setattr(ports, "history", SimpleNamespace(record_snapshot=crash))
    assert Aggregate.from_ports(ports)(log, key).applied  # counted; the snapshot lost
    assert store.snapshots(ENDPOINT, 10) == []
    monkeypatch.setattr(ports, "history", store)
    assert not usecases.aggregate(log, key).applied  # the retry counts nothing again ...
    assert [s.seq for s in store.snapshots(ENDPOINT, 10)] == [1]  # ... and keeps the point


def test_warm_up_is_marked(usecases, log, store):
    store.register_endpoint(config(warmup=10_000), 0.0)
    simulate(usecases, random.Random(6), 10, {"Champion1": 0.5, "Challenger1": 0.5})
    usecases.aggregate(log, log.deliver())
    (snapshot,) = store.snapshots(ENDPOINT, 10)
    assert snapshot.warming_up and snapshot.strategy == "WeightedSampling"
