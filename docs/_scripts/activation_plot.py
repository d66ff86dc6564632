"""Draw λ-GELU between GELU and ReLU: ``python docs/_scripts/activation_plot.py`` → docs/img/lambda_gelu.png.

f(x; λ) = x·Φ(λx) computed with the package's own activation; λ = 1 is GELU, λ → ∞ is ReLU, and the largest
distance to ReLU is c/λ (c ≈ 0.16997, ``hf_lambda_gelu.RELU_DISTANCE_CONSTANT``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from hf_lambda_gelu import RELU_DISTANCE_CONSTANT, lambda_gelu

OUT = Path(__file__).resolve().parents[1] / "img" / "lambda_gelu.png"
LAMBDAS = (1.0, 2.0, 5.0, 20.0)


def main(out: Path = OUT) -> Path:
    x = torch.linspace(-3, 3, 601)
    fig, (full, zoom) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for axis, limits in ((full, (-3, 3)), (zoom, (-1, 0.6))):
        axis.plot(x, torch.relu(x), color="black", lw=2, label="ReLU (λ → ∞)")
        for lam in LAMBDAS:
            y = lambda_gelu(x, torch.tensor(lam))
            name = "GELU (λ = 1)" if lam == 1 else f"λ = {lam:g}  (c/λ = {RELU_DISTANCE_CONSTANT / lam:.3f})"
            axis.plot(x, y, lw=1.5, label=name)
        axis.set_xlim(*limits)
        axis.axhline(0, color="grey", lw=0.5)
        axis.axvline(0, color="grey", lw=0.5)
        axis.set_xlabel("x")
    full.set_ylabel("f(x; λ) = x·Φ(λx)")
    full.set_title("λ-GELU between GELU and ReLU")
    zoom.set_ylim(-0.2, 0.6)
    zoom.set_title("near 0: the distance to ReLU is at most c/λ")
    full.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
