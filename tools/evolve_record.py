"""tools.evolve's record of a search: each candidate's verdict against its parent (the paired
interval of the twins' fitness differences), evolve.csv and evolve.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from utils.core.significance import paired_interval

KEPT, NOT_KEPT, START = "kept", "not better than the parent beyond seed noise", "start"


def judge(parent: list[float], child: list[float], level: float
          ) -> tuple[float, float, float, bool]:
    """The twins' fitness differences child - parent: mean, interval at ``level`` (the paired
    t of utils/core/significance.py, as tools.compare_groups reads twins), and whether the
    child is better beyond the seed noise (the interval's low end above 0)."""
    mean, low, high = paired_interval([c - p for c, p in zip(child, parent)], level)
    return mean, low, high, bool(low > 0)


def row(generation: int, hyp: dict, scores: list[float], parent: dict | None = None,
        level: float = 0.95) -> dict:
    """One candidate of evolve.csv; generation 0 (no parent) is the start."""
    entry = {"generation": generation, "parent": None, "verdict": START,
             "mean": float(np.mean(scores)), "fitness": scores, "difference": None, "hyp": hyp}
    if parent is not None:
        mean, low, high, kept = judge(parent["fitness"], scores, level)
        entry.update(parent=parent["generation"], verdict=KEPT if kept else NOT_KEPT,
                     difference=(mean, low, high))
    return entry


def csv_text(rows: list[dict], seeds: list[int]) -> str:
    """evolve.csv: per candidate its generation, parent, verdict, fitness (mean, per seed), the
    paired difference from the parent with its interval, and every hyp value."""
    keys = list(rows[0]["hyp"])
    header = ["generation", "parent", "verdict", "fitness_mean",
              *[f"fitness_seed{s}" for s in seeds], "difference_vs_parent", "interval_low",
              "interval_high", *keys]
    lines = [",".join(header)]
    for entry in rows:
        cells = [entry["generation"], entry["parent"], entry["verdict"], entry["mean"],
                 *entry["fitness"], *(entry["difference"] or (None,) * 3),
                 *(entry["hyp"][k] for k in keys)]
        lines.append(",".join(_cell(c) for c in cells))
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    """A CSV cell: floats at full precision (repr), so two identical searches match byte for
    byte and a reader gets the very numbers the verdicts used."""
    return "" if value is None else repr(float(value)) if isinstance(value, float) else str(value)


def plot_evolve(rows: list[dict], seeds: list[int], level: float, path: Path) -> None:
    """Fitness per generation (each seed a dot, the mean a bar, kept candidates a star, the
    parent's mean a dashed step) above each candidate's paired difference from its parent with
    its interval (green: above 0, kept)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    gens = [r["generation"] for r in rows]
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(max(7.0, 0.4 * len(rows) + 4), 7.0),
        gridspec_kw={"height_ratios": [3, 2]}, constrained_layout=True)
    offsets = np.linspace(-0.18, 0.18, len(seeds))
    for i, seed in enumerate(seeds):
        top.scatter([g + offsets[i] for g in gens], [r["fitness"][i] for r in rows], s=16,
                    color=f"C{i % 10}", alpha=0.75, label=f"seed {seed}")
    top.hlines([r["mean"] for r in rows], [g - 0.25 for g in gens], [g + 0.25 for g in gens],
               color="black", linewidth=2, label="mean over the seeds", zorder=3)
    kept = [r for r in rows if r["verdict"] in (KEPT, START)]
    top.scatter([r["generation"] for r in kept], [r["mean"] for r in kept], marker="*", s=220,
                color="tab:green", edgecolors="black", zorder=4,
                label="parent: the start, or a candidate kept")
    parent_means, mean = [], rows[0]["mean"]
    for r in rows:
        mean = r["mean"] if r["verdict"] in (KEPT, START) else mean
        parent_means.append(mean)
    top.step([*gens, gens[-1] + 0.5], [*parent_means, parent_means[-1]], where="post",
             color="tab:green", linestyle="--", alpha=0.7, label="the parent's mean")
    top.set_ylabel("fitness\n0.1 mAP@0.5 + 0.9 mAP@0.5:0.95")
    top.set_title(f"tools.evolve: {len(rows) - 1} generations x {len(seeds)} seeds\na candidate "
                  "is kept when it beats its parent beyond the seed noise", fontsize=10)
    top.legend(fontsize=7, loc="best", ncol=2)
    top.grid(alpha=0.3)
    _plot_differences(bottom, rows[1:], level)
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlim(min(gens) - 0.5, max(gens) + 0.5)
    bottom.set_xlabel("generation (0: the starting hyp)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_differences(ax, rows: list[dict], level: float) -> None:
    for r in rows:
        mean, low, high = r["difference"]
        kept = r["verdict"] == KEPT
        ax.errorbar(r["generation"], mean, yerr=[[mean - low], [high - mean]], fmt="o",
                    color="tab:green" if kept else "tab:gray", capsize=4, markersize=6)
        if len(rows) <= 20:
            ax.annotate(f"vs g{r['parent']}", (r["generation"], high), fontsize=7,
                        ha="center", va="bottom", xytext=(0, 2), textcoords="offset points")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.margins(y=0.2)  # room for the labels above the intervals
    ax.plot([], [], "o", color="tab:green", label="kept: the interval lies above 0")
    ax.plot([], [], "o", color="tab:gray", label="not better beyond seed noise")
    ax.set_ylabel(f"candidate - parent\n(twins' mean, paired {level:.0%} interval)")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
