"""Auto-conclude on the embedded server, over HTTP: traffic until the decision names a clear
winner concludes the experiment on its own, and from then on the winner serves every user,
new and existing."""

from __future__ import annotations

from abtest.demo.simulation import ApiClient, served_concluded, simulate
from abtest.demo.worlds import Bernoulli, TruthWorld
from tests.embedded.helpers import ENDPOINT

# Far apart, so that the call comes soon after both variants have the decision's 100 users:
# with ~100 users each the difference 0.5 is over 7 standard errors (sd <= 0.5 / sqrt(100)
# per rate), where the always-valid bound (planned for 300 users) is a few.
WORLD = TruthWorld({"Champion1": Bernoulli(0.1), "Challenger1": Bernoulli(0.6)})
AFTER = 40  # users sent after the conclusion


def test_traffic_until_a_clear_winner_concludes_and_the_winner_serves_everyone(
    start_server,
) -> None:
    # GIVEN an auto_conclude endpoint splitting users evenly between two models
    server = start_server(
        interval=0.1,
        strategy="WeightedSampling",
        extra_endpoint="auto_conclude = true\nplanned_sample_size = 300",
        variants={v: "tests.embedded.helpers:constant" for v in WORLD.truth},
    )
    with ApiClient(server.url) as client:
        # WHEN users come until the experiment concluded, and AFTER more
        results = simulate(
            client,
            ENDPOINT,
            WORLD,
            users=2_000,
            seed=4,
            progress=False,
            until=lambda so_far: len(served_concluded(so_far)) >= AFTER,
        )
        shown = client.admin("show", {"endpoint_name": ENDPOINT})
        # existing users of both variants come back
        earlier = results[:60]
        again = [
            client.invocation({"endpoint_name": ENDPOINT, "user_id": r.user_id, "data": "{}"})
            for r in earlier
        ]

    # THEN it concluded on its own, long before the 2,000 users, for the better variant
    assert len(results) < 1_000
    assert (shown["state"], shown["winner"]) == ("concluded", "Challenger1")
    assert shown["allocation"] == {"Champion1": 0.0, "Challenger1": 1.0}
    (entry,) = shown["audit_log"]
    assert (entry["actor"], entry["action"]) == ("auto-conclude", "conclude")
    assert entry["details"]["winner"] == "Challenger1"
    assert "always-valid p" in entry["reason"] and "P(best)" in entry["reason"]
    # AND every user after it was served by the winner, as were the returning ones
    after = served_concluded(results)
    assert len(after) == AFTER
    assert {(r.variant, r.assignment, r.propensity) for r in after} == {
        ("Challenger1", "concluded", 1.0)
    }
    assert {r.variant for r in earlier} == {"Champion1", "Challenger1"}
    assert {(a["endpoint_variant"], a["assignment"]) for a in again} == {
        ("Challenger1", "concluded")
    }
