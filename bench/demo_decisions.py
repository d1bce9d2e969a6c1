"""Does `abtest demo`, run with its defaults, end with the right winner called?

    python bench/demo_decisions.py              # seeds 0..19 (make bench)
    python bench/demo_decisions.py --seeds 3    # quick look

Each seed runs the demo itself in this process (`abtest.demo.run_demo`: the embedded server
on a loopback port, the simulation over HTTP, the plots) and reads the decision of its
final `/stats`. The challenger is the better model by construction (abtest.demo.reviews),
so it is the right winner; calling the champion is wrong.
"""

from __future__ import annotations

import argparse
import collections
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
    print("| seed | winner | reason | users on the champion | always-valid p |")
    print("|---:|---|---|---:|---:|")
    outcomes: collections.Counter[str] = collections.Counter()
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as out_dir:
            result = run_demo(out_dir, seed=seed, progress=False, out=lambda _: None)
        decision = result.stats["decision"]
        winner = decision["winner"]
        champion_users = next(
            m["invocation_count"]
            for m in result.stats["variant_metrics"]
            if m["variant_name"] == CHAMPION
        )
        p_value = next(
            v["always_valid_p_value"]
            for v in decision["variants"]
            if v["variant_name"] == CHALLENGER
        )
        outcomes["right" if winner == CHALLENGER else "wrong" if winner else "none"] += 1
        print(
            f"| {seed} | {winner or '-'} | {decision['reason']} | {champion_users} "
            f"| {p_value:.3g} |"
        )
    print(
        f"\nright winner in {outcomes['right']} of {args.seeds} seeds, wrong in "
        f"{outcomes['wrong']}, none in {outcomes['none']}; total "
        f"{time.perf_counter() - started:,.0f} s"
    )


if __name__ == "__main__":
    main()
