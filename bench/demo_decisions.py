"""Does `abtest demo`, run with its defaults, conclude with the right winner?

    python bench/demo_decisions.py              # seeds 0..19 (make bench)
    python bench/demo_decisions.py --seeds 3    # quick look

Each seed runs the demo itself in this process (`abtest.demo.run_demo`: the embedded server
on a loopback port, the simulation over HTTP until the experiment concludes on its own and
200 users after, the plots) and reads the winner it concluded with, the audit entry's
evidence, and the share the winner served after. The challenger is the better model by
construction (abtest.demo.reviews), so it is the right winner; the champion is wrong.
"""

from __future__ import annotations

import argparse
import collections
import re
import tempfile
import time

from abtest.demo import run_demo
from abtest.demo.reviews import CHALLENGER, CHAMPION, accuracy, held_out_reviews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    reviews = held_out_reviews()
    print(
        f"demo decisions: {args.seeds} seeds, the demo's defaults; accuracy on held-out "
        f"reviews {CHAMPION} {accuracy(CHAMPION, reviews):.3f}, "
        f"{CHALLENGER} {accuracy(CHALLENGER, reviews):.3f}\n"
    )
    print(
        "| seed | concluded with | after users | always-valid p then | users on the champion "
        "| winner's share after | seconds |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    outcomes: collections.Counter[str] = collections.Counter()
    for seed in range(args.seeds):
        began = time.perf_counter()
        with tempfile.TemporaryDirectory() as out_dir:
            result = run_demo(out_dir, seed=seed, progress=False, out=lambda _: None)
        seconds = time.perf_counter() - began
        shown = result.endpoint
        winner = shown["winner"] if shown["state"] == "concluded" else None
        champion_users = next(
            m["invocation_count"] for m in shown["variant_metrics"] if m["variant_name"] == CHAMPION
        )
        # The audit entry's reason states the evidence the conclusion rested on.
        reasons = [e["reason"] for e in shown["audit_log"] if e["action"] == "conclude"]
        found = re.search(r"always-valid p ([0-9.e-]+)", reasons[0]) if reasons else None
        share = result.winner_served / result.after_conclusion if result.after_conclusion else 0
        outcomes["right" if winner == CHALLENGER else "wrong" if winner else "none"] += 1
        print(
            f"| {seed} | {winner or '-'} | {result.users - result.after_conclusion} "
            f"| {found.group(1) if found else '-'} | {champion_users} | {share:.1%} "
            f"| {seconds:.0f} |"
        )
    print(
        f"\nconcluded with the right winner in {outcomes['right']} of {args.seeds} seeds, the "
        f"wrong one in {outcomes['wrong']}, not concluded in {outcomes['none']}; total "
        f"{time.perf_counter() - started:,.0f} s"
    )


if __name__ == "__main__":
    main()
