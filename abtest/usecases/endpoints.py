"""An endpoint's record as the use cases see it: cached briefly, its strategy built once, its
figures (allocation, decision) worked out when the record changes and read everywhere else."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import bandit
from abtest import guardrails
from abtest.config_types import INVOCATION
from abtest.errors import NotFoundError
from abtest.lifecycle import State
from abtest.ports import Store
from abtest.records import DELETED, Assignment, Endpoint, Figures, VariantCounters
from bandit.metrics import VariantMetrics
from bandit.selection import Allocation

logger = logging.getLogger("abtest")


def variant_metrics(
    endpoint: Endpoint, variants: tuple[VariantCounters, ...] | None = None
) -> tuple[VariantMetrics, ...]:
    """The one place the service's counters become the trials the strategy, the allocation
    and the decision count, by the endpoint's unit (see `bandit.VariantMetrics`): of
    `variants`, by default every variant of the record."""
    per_trial = _per_invocation if endpoint.settings.unit == INVOCATION else _per_user
    weights = endpoint.weights  # those set by hand replace the configured ones
    return tuple(
        per_trial(replace(v, initial_variant_weight=weights[v.variant_name]))
        for v in (endpoint.variants if variants is None else variants)
    )


def _per_invocation(variant: VariantCounters) -> VariantMetrics:
    """The original's trials: every invocation, every conversion; no propensity weights."""
    c = variant.counts
    return VariantMetrics(
        variant_name=variant.variant_name,
        initial_variant_weight=variant.initial_variant_weight,
        invocation_count=c.invocation_count,
        conversion_count=c.conversion_count,
        reward_sum=c.reward_sum,
        reward_sq_sum=c.reward_sq_sum,
    )


def _per_user(variant: VariantCounters) -> VariantMetrics:
    """A trial per assignment: its user, their first conversion within the window."""
    c = variant.counts
    return VariantMetrics(
        variant_name=variant.variant_name,
        initial_variant_weight=variant.initial_variant_weight,
        invocation_count=c.users,
        conversion_count=c.converted_users,
        reward_sum=c.user_reward_sum,
        reward_sq_sum=c.user_reward_sq_sum,
        weight_sum=c.weight_sum,
        weight_sq_sum=c.weight_sq_sum,
        weighted_reward_sum=c.weighted_reward_sum,
        weighted_reward_cross_sum=c.weighted_reward_cross_sum,
        weighted_reward_sq_sum=c.weighted_reward_sq_sum,
    )


def configured_strategy(endpoint: Endpoint) -> bandit.Strategy:
    """The one place an endpoint's strategy is built from its record."""
    return bandit.get_strategy(
        endpoint.strategy, endpoint.strategy_params, reward=endpoint.settings.reward
    )


def _candidates(
    endpoint: Endpoint, demoted: Mapping[str, str] | None = None
) -> tuple[VariantMetrics, ...]:
    """The trials of the variants the strategy allocates among and the decision compares:
    the serving ones but those a guardrail demoted (`abtest.guardrails.demoted`)."""
    if demoted is None:
        demoted = guardrails.demoted(endpoint)
    return variant_metrics(
        endpoint, tuple(v for v in endpoint.serving_variants if v.variant_name not in demoted)
    )


def _warming_alone(
    endpoint: Endpoint, candidates: tuple[VariantMetrics, ...]
) -> tuple[tuple[VariantMetrics, ...], tuple[VariantMetrics, ...]]:
    """The candidates split into those the strategy allocates among and the added ones
    still in their own warm-up (`warmup` trials or fewer). A variant added to a running
    experiment warms up alone: the others keep the strategy's allocation."""
    added = endpoint.lifecycle.added_models
    warming = tuple(
        m for m in candidates if m.variant_name in added and m.invocation_count <= endpoint.warmup
    )
    if not warming or len(warming) == len(candidates):
        return candidates, ()
    return tuple(m for m in candidates if m not in warming), warming


def _deciding_strategy(endpoint: Endpoint, settled: tuple[VariantMetrics, ...]) -> bandit.Strategy:
    return bandit.deciding_strategy(configured_strategy(endpoint), settled, endpoint.warmup)


def _allocate(
    endpoint: Endpoint, demoted: Mapping[str, str]
) -> tuple[bandit.Strategy, tuple[VariantMetrics, ...], dict[str, float]]:
    """The deciding strategy, the candidates and the allocation a new user would get now
    (warm-up included; 0 for a demoted variant): one pass for every caller.

    A newcomer still warming up alone gets the share warm-up would give it among every
    candidate (WeightedSampling's, by weight); the strategy splits the rest among the
    others as it would without the newcomer, so their allocation only shrinks."""
    candidates = _candidates(endpoint, demoted)
    settled, warming = _warming_alone(endpoint, candidates)
    strategy = _deciding_strategy(endpoint, settled)
    allocation = strategy.allocation(settled)
    if warming:
        shares = bandit.WeightedSampling().allocation(candidates)
        rest = 1.0 - sum(shares[m.variant_name] for m in warming)
        merged = {name: p * rest for name, p in allocation.items()}
        merged |= {m.variant_name: shares[m.variant_name] for m in warming}
        allocation = {m.variant_name: merged[m.variant_name] for m in candidates}
    return strategy, candidates, allocation | dict.fromkeys(demoted, 0.0)


def current_allocation(endpoint: Endpoint) -> dict[str, float]:
    """The probabilities a new user would be assigned with now (`_allocate`)."""
    return _allocate(endpoint, guardrails.demoted(endpoint))[2]


def current_figures(endpoint: Endpoint) -> Figures:
    """Work out the record's figures: the demoted variants, the allocation (by quadrature,
    for Thompson) and the decision. Costly (milliseconds), so done when the counters
    change, not per request."""
    # Imported here: statistics are for /stats, not for the invocation path's cold start.
    from bandit.stats import decision

    demoted = guardrails.demoted(endpoint)
    strategy, candidates, allocation = _allocate(endpoint, demoted)
    return Figures(
        basis=endpoint.basis,
        strategy=strategy.name,
        allocation=allocation,
        # The allocation new users get is what the users still needed are counted at. A
        # demoted variant is no candidate: the decision never names it.
        decision=decision(
            candidates,
            allocation={v.variant_name: allocation[v.variant_name] for v in candidates},
            reward=endpoint.settings.reward,
            tightest_at=endpoint.settings.planned_sample_size,
            unit=endpoint.settings.unit,
        ).as_dict(),
        demoted=demoted,
    )


def figures_of(endpoint: Endpoint) -> Figures:
    """The record's stored figures if they are its own, else worked out now."""
    return endpoint.fresh_figures or current_figures(endpoint)


def refresh_figures(store: Store, endpoint_name: str) -> Figures | None:
    """Work out and store the figures of the record as it is now, unless it already has its
    own; None for an unknown endpoint. Run where records change (aggregation, registration)."""
    return _refreshed(store, endpoint_name)[1]


def refreshed_endpoint(store: Store, endpoint_name: str) -> Endpoint | None:
    """`refresh_figures`, then the record its stored figures were worked out from, with
    them: what aggregation's next steps read, without reading it again. None for an unknown
    endpoint, or when the figures could not be stored (the record changed meanwhile)."""
    return _refreshed(store, endpoint_name)[0]


def _refreshed(store: Store, endpoint_name: str) -> tuple[Endpoint | None, Figures | None]:
    try:
        endpoint = store.get_endpoint(endpoint_name)
        if endpoint is None or endpoint.fresh_figures is not None:
            return endpoint, None if endpoint is None else endpoint.fresh_figures
        figures = current_figures(endpoint)
        if not store.save_figures(endpoint_name, figures):
            logger.info("%s changed meanwhile; whoever changed it saves its figures", endpoint_name)
            return None, figures
        return replace(endpoint, figures=figures), figures
    except Exception:
        # The counters are committed; without stored figures, readers work them out.
        logger.exception("figures of %s not stored; requests work them out", endpoint_name)
        return None, None


def unknown_endpoint(name: str) -> NotFoundError:
    return NotFoundError(
        f"endpoint_name: {name!r} is not a registered endpoint",
        details=[{"field": "endpoint_name", "message": "not registered"}],
    )


# The `strategy` of users assigned while the endpoint is paused (to the champion), and of
# every invocation once it is concluded (the winner's). The lifecycle made these
# assignments, not the experiment's draw: their users are no trials of it.
PAUSED_STRATEGY = "Paused"
CONCLUDED_STRATEGY = "Concluded"
UNRANDOMIZED_STRATEGIES = frozenset({PAUSED_STRATEGY, CONCLUDED_STRATEGY})


def paused_allocation(endpoint: Endpoint) -> Allocation:
    """What new users get while the experiment is paused: the fixed weights of a
    WeightedSampling endpoint (they are the design, not the bandit's doing), otherwise the
    champion, the first variant still serving: the one the experiment set out to beat. A
    variant a guardrail demoted gets no one here either."""
    stored = endpoint.fresh_figures
    serving = _candidates(endpoint, stored.demoted if stored is not None else None)
    if endpoint.strategy == bandit.WeightedSampling.name:
        weights = bandit.WeightedSampling().allocation(serving)
        return Allocation(bandit.WeightedSampling.name, weights)
    return Allocation(PAUSED_STRATEGY, {serving[0].variant_name: 1.0})


# Assignments one endpoint entry remembers at most (about 5 MB, with their user ids);
# past it, it forgets them all and starts again (the store still holds every one).
MAX_REMEMBERED_ASSIGNMENTS = 20_000


def allocation_now(endpoint: Endpoint, figures: Figures) -> dict[str, float]:
    """What a new user gets now, by variant: the strategy's (`figures`), unless the
    experiment is paused (`paused_allocation`) or concluded (the winner, to everyone).
    /stats, /admin/show and the history all report this one."""
    lifecycle = endpoint.lifecycle
    if lifecycle.state is State.CONCLUDED and lifecycle.winner is not None:
        now = {lifecycle.winner: 1.0}
    elif lifecycle.state is State.PAUSED:
        now = paused_allocation(endpoint).probabilities
    else:
        return figures.allocation
    return dict.fromkeys(figures.allocation, 0.0) | now


def decision_now(endpoint: Endpoint, figures: Figures) -> dict[str, Any]:
    """The decision on the counters (`figures`), with advice for the state the experiment
    is in. Once concluded nobody is split any more, so "about N more users at the current
    allocation" would never come true: the advice says it is concluded, and the figures,
    which go on moving with the winner's users, are for the record. /stats and
    /admin/show both report this one."""
    lifecycle = endpoint.lifecycle
    if lifecycle.state is not State.CONCLUDED or lifecycle.winner is None:
        return figures.decision
    advice = (
        f"concluded: {lifecycle.winner} serves every user, so nothing is split or decided "
        "any more; these figures are the counters as they stand, for the record"
    )
    return figures.decision | {"advice": advice, "users_needed": None}


@dataclass(frozen=True, slots=True)
class ServedEndpoint:
    """A registered, active endpoint and the allocation new users are picked from: the
    stored one, worked out when the counters last changed (or the paused one).

    `assignments` are the ones this process read from the store or made in it since this
    entry was read (user id -> assignment): a returning user is answered without a store
    read. They live and die with the entry (aggregation's `recount` reads the record
    again within the entry and keeps them), so they are as current as it is: a variant
    retired, a winner declared or an assignment replaced by another process is seen here
    when the entry is next read (`EndpointCache`'s interval), as the endpoint itself is.
    The store stays the only authority on who gets what: nothing is remembered that it
    did not return, and an entry past its ttl is read again."""

    endpoint: Endpoint
    allocation: Allocation
    assignments: dict[str, Assignment] = field(default_factory=dict, compare=False, repr=False)
    # The names of the variants users can have now (`serving_variants`), worked out once.
    serving: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        serving = frozenset(v.variant_name for v in self.endpoint.serving_variants)
        object.__setattr__(self, "serving", serving)

    def remembered(self, user_id: str, now: float) -> Assignment | None:
        """The user's assignment as last read or made here, if it has not expired and its
        variant still serves (one retired since is replaced like an expired one)."""
        assignment = self.assignments.get(user_id)
        if (
            assignment is None
            or assignment.ttl <= now
            or assignment.variant_name not in self.serving
        ):
            return None
        return assignment

    def remember(self, assignment: Assignment) -> None:
        if len(self.assignments) >= MAX_REMEMBERED_ASSIGNMENTS:
            self.assignments.clear()
        self.assignments[assignment.user_id] = assignment

    @classmethod
    def of(
        cls, endpoint: Endpoint, assignments: dict[str, Assignment] | None = None
    ) -> ServedEndpoint:
        """The entry of a record just read, remembering `assignments` (none by default)."""
        stored = endpoint.fresh_figures
        if endpoint.lifecycle.state is State.PAUSED:
            allocation = paused_allocation(endpoint)
        elif stored is not None:
            allocation = Allocation(stored.strategy, stored.allocation)
        else:  # a record no aggregation has worked out yet (or changed since): once per read
            strategy, _, probabilities = _allocate(endpoint, guardrails.demoted(endpoint))
            allocation = Allocation(strategy.name, probabilities)
        return cls(endpoint, allocation, {} if assignments is None else assignments)


class EndpointCache:
    """Metrics records read at most once per `ttl_seconds`, shared by one process's use cases.

    Metrics change only when aggregation runs (every buffer interval), so a short cache
    saves a store read on every request. Registration `reread`s what it registered,
    lifecycle changes `forget` what they change (and read it back), and aggregation
    `recount`s what it counted, so the process that changed a record sees the change at once.
    """

    def __init__(self, store: Store, ttl_seconds: float) -> None:
        self.store = store
        self.ttl_seconds = ttl_seconds
        # name -> (the endpoint if served, None if unknown or deleted; when it was read)
        self._entries: dict[str, tuple[ServedEndpoint | None, float]] = {}
        # Entries whose counters aggregation changed since they were read (`recount`).
        self._recounted: set[str] = set()

    def served(self, name: str, now: float) -> ServedEndpoint:
        """The endpoint if it is registered and active; NotFoundError (404) otherwise."""
        entry = self._entries.get(name)
        if entry is None or now - entry[1] >= self.ttl_seconds:
            self.reread(name, now)
            entry = self._entries[name]
        elif name in self._recounted:
            # Discarded before the read: a recount during it is seen at the next request.
            self._recounted.discard(name)
            remembered = entry[0].assignments if entry[0] is not None else None
            entry = self._entries[name] = (self._read(name, remembered), entry[1])
        if entry[0] is None:
            raise unknown_endpoint(name)
        return entry[0]

    def _read(
        self, name: str, assignments: dict[str, Assignment] | None = None
    ) -> ServedEndpoint | None:
        endpoint = self.store.get_endpoint(name)
        if endpoint is None or endpoint.status == DELETED:
            return None
        return ServedEndpoint.of(endpoint, assignments)

    def last_known(self, name: str) -> ServedEndpoint | None:
        """The endpoint as this process last read it, however long ago: a read that fails
        raises before the entry is replaced, so the one before it stays. What the fallback
        serves by while the store cannot be read; None if it was never read here (or
        since a `forget`), or was unknown or deleted when last read."""
        entry = self._entries.get(name)
        return None if entry is None else entry[0]

    def forget(self, name: str) -> None:
        self._recounted.discard(name)
        self._entries.pop(name, None)

    def reread(self, name: str, now: float) -> None:
        """Read the record again at once, as read `now`, forgetting the users it remembered:
        an expired entry, or a change this process made (its requests, and its fallback
        should the store go down before the next request, then serve by the changed record;
        after a `forget` the fallback would have none). A read that fails keeps the entry
        it would have replaced, for the fallback."""
        self._recounted.discard(name)  # before the read: a recount during it is seen next
        self._entries[name] = (self._read(name), now)

    def recount(self, name: str) -> None:
        """Aggregation changed the record's counters and figures, nothing else: the next
        request reads it again but keeps the assignments this entry remembers (counters do
        not change who has what, and a `forget` after a forget-worthy change still drops
        them). They go, as always, when the entry's own interval is up, since it is kept
        from the entry's first read: no assignment is remembered longer than before."""
        self._recounted.add(name)
