"""Plot relufy's measured fidelity per budget: ``python docs/_scripts/relufy_plot.py`` → docs/img/relufy_budgets.png.

Reads ``benchmarks/results/relufy.json`` (written by ``benchmarks/relufy.py``, benchmarks/README.md §6): for each
start point, the main fidelity measure (mean over seeds) of the two roads at 1/8, 1 and 3 epochs, and the naive
swap as a dashed line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "relufy.json"
OUT = ROOT / "docs" / "img" / "relufy_budgets.png"
#: The start point's main measure (a key of the JSON's summary) and its label.
MEASURES = {
    "top1_agreement": "agreement %",
    "next_token_agreement": "next-byte agreement %",
    "mean_cosine": "mean cosine",
}
ROADS = {"swap_distil": "swap → distil (default)", "lambda_distil": "λ road"}


def _measure(summary: dict) -> str:
    arm = next(iter(summary.values()))
    return next(name for name in MEASURES if name in arm)


def main(results: Path = RESULTS, out: Path = OUT) -> Path:
    tasks = json.loads(results.read_text(encoding="utf-8"))["tasks"]
    fig, grid = plt.subplots(2, 3, figsize=(11, 6.4), dpi=100)
    axes = grid.ravel()
    for axis in axes[len(tasks) :]:
        axis.set_visible(False)
    for axis, (name, task) in zip(axes, tasks.items()):
        summary, budgets = task["summary"], task["budgets"]
        measure = _measure(summary)
        scale = 1 if measure == "mean_cosine" else 100
        naive = summary[f"naive_swap@{budgets[0]:g}"][measure]["mean"] * scale
        axis.axhline(naive, color="grey", ls="--", label="naive swap")
        for road, label in ROADS.items():
            values = [summary[f"{road}@{b:g}"][measure]["mean"] * scale for b in budgets]
            axis.plot(budgets, values, marker="o", label=label)
        axis.set_xscale("log")
        axis.set_xticks(budgets, [f"{b:g}" for b in budgets])
        axis.minorticks_off()
        axis.set_xlabel("epochs of the unlabeled data")
        axis.set_title(name, fontsize=10)
        axis.set_ylabel(MEASURES[measure])
    axes[0].legend(fontsize=8)
    fig.suptitle("relufy on held-out inputs, mean of 3 seeds (benchmarks/results/relufy.json)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main(out=Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
