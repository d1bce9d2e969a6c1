"""Auto-conclude: an endpoint with `auto_conclude` concludes as soon as an aggregation leaves
its decision naming a winner, through the same use case as a person's conclude (so whatever
concluding does, such as promoting the winner's SageMaker weights, it does here too)."""

from __future__ import annotations

import logging
from typing import Any

from abtest.errors import ConflictError
from abtest.lifecycle import AUTO_CONCLUDE_ACTOR, Action, State
from abtest.ports import Store
from abtest.records import DELETED, Endpoint
from abtest.usecases import Ports
from abtest.usecases.admin import ChangeLifecycle, EndpointView, LifecycleChange
from abtest.usecases.endpoints import figures_of

logger = logging.getLogger("abtest")


class AutoConclude:
    """Run by aggregation after it stored an endpoint's figures.

    Only a `running` experiment is concluded: a paused one was stopped by a person, who
    decides what happens next (resume, or conclude by hand); concluding it behind their back
    would undo their hold. The conclusion is conditional on the lifecycle version read with
    the decision, so a person's change made meanwhile wins and this one is dropped (409,
    logged, not an error); a repeated aggregation finds the endpoint concluded and does
    nothing. The decision already withholds a winner the sample-ratio check (and any
    guardrail) blocks, so a named winner is one nothing blocks.
    """

    def __init__(self, *, store: Store, change_lifecycle: ChangeLifecycle) -> None:
        self.store = store
        self.change_lifecycle = change_lifecycle

    @classmethod
    def from_ports(cls, ports: Ports) -> AutoConclude:
        return cls(store=ports.store, change_lifecycle=ChangeLifecycle.from_ports(ports))

    def __call__(self, endpoint_name: str, endpoint: Endpoint | None = None) -> EndpointView | None:
        """The concluded endpoint, or None when there is nothing to conclude (or it lost).

        `endpoint`: the record as read a moment ago, else it is read now; either way the
        conclusion is made only on the lifecycle version it was read at."""
        endpoint = endpoint or self.store.get_endpoint(endpoint_name)
        if (
            endpoint is None
            or endpoint.status == DELETED
            or not endpoint.settings.auto_conclude
            or endpoint.lifecycle.state is not State.RUNNING
        ):
            return None
        decision = figures_of(endpoint).decision
        winner = decision.get("winner")
        if winner is None:
            return None
        change = LifecycleChange(
            endpoint_name,
            Action.CONCLUDE,
            actor=AUTO_CONCLUDE_ACTOR,
            reason=evidence(decision, endpoint.settings.unit),
            winner=str(winner),
            if_version=endpoint.lifecycle.version,
        )
        try:
            view = self.change_lifecycle(change)
        except ConflictError as error:  # someone paused, concluded or retired meanwhile
            logger.info("auto-conclude of %s dropped: %s", endpoint_name, error)
            return None
        logger.info("auto-concluded %s: %s", endpoint_name, change.reason)
        return view


def evidence(decision: dict[str, Any], unit: str) -> str:
    """The audit log's reason: the winner, its P(best) against the threshold, each
    challenger's always-valid p-value against the level of the call, and the trials counted."""
    figures = {v["variant_name"]: v for v in decision["variants"]}
    winner = decision["winner"]
    trials = sum(v["invocation_count"] for v in decision["variants"])
    parts = [
        f"the decision names {winner}: P(best) {figures[winner]['probability_best']:.3f} "
        f"(threshold {decision['probability_threshold']:g})"
    ]
    level = decision.get("difference_alpha") or decision["alpha"]
    for name, figure in figures.items():
        p_value = figure.get("always_valid_p_value")
        if name != decision["champion"] and p_value is not None:
            parts.append(
                f"always-valid p {p_value:.3g} for {name} vs {decision['champion']} "
                f"(level {level:.3g})"
            )
    parts.append(f"{trials:,} {unit}s")
    return "; ".join(parts)
