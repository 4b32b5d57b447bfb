"""own_data.md's pooled verdict for one lever over several sets: the paired 95% t interval of
the final epoch's mAP differences B - A over every seed twin of every pair of groups.

    PYTHONPATH=. python docs/measurements/own_data_scripts/pooled_twins.py \
        A_GROUP:B_GROUP [A_GROUP:B_GROUP ...]

Each group is a tools.seed_group folder (seedK/ runs); twins are the runs of the same seed in A
and B. compare_groups answers for one set; this answers "over these sets".
"""
import sys
from pathlib import Path

from utils.core.significance import paired_interval
from utils.engine.results import read_results


def final_maps(run: Path) -> tuple[float, float, int]:
    """(mAP@0.5, mAP@0.5:0.95) of the run's last epoch, and its epoch count."""
    rows = read_results(run)
    return rows[-1].values["mAP@0.5"], rows[-1].values["mAP@0.5:0.95"], len(rows)


def main(pairs: list[str]) -> None:
    d50, d95 = [], []
    for pair in pairs:
        group_a, group_b = (Path(p) for p in pair.split(":"))
        for run_b in sorted(group_b.glob("seed*")):
            (a50, a95, na), (b50, b95, nb) = final_maps(group_a / run_b.name), final_maps(run_b)
            if na != nb:
                sys.exit(f"{run_b}: {nb} epochs, its twin in {group_a} {na}")
            d50.append(b50 - a50)
            d95.append(b95 - a95)
            print(f"{group_b.name}/{run_b.name}: mAP@0.5 {a50:.3f} -> {b50:.3f}; "
                  f"mAP@0.5:0.95 {a95:.3f} -> {b95:.3f}")
    for name, diffs in (("mAP@0.5", d50), ("mAP@0.5:0.95", d95)):
        mean, low, high = paired_interval(diffs, 0.95)
        print(f"{name}: {len(diffs)} twins, mean {mean:+.4f}, paired 95% {low:+.4f} .. "
              f"{high:+.4f}, {sum(d > 0 for d in diffs)} of {len(diffs)} higher")


if __name__ == "__main__":
    main(sys.argv[1:])
