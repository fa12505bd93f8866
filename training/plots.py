"""PNG plots for the MLflow run: residuals, predicted vs actual, feature importance."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plots(
    directory: Path, y_true: np.ndarray, y_pred: np.ndarray, names: list[str], importance: np.ndarray, label: str
) -> list[Path]:
    """Write the three PNGs into ``directory`` (matplotlib's Agg backend, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(y_pred, y_true - y_pred, s=8, alpha=0.5)
    ax.axhline(0.0, color="black", lw=1)
    ax.set(xlabel=f"predicted {label}", ylabel="residual (actual − predicted)", title="Holdout residuals")
    fig.tight_layout()
    paths.append(directory / "residuals.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y_true, y_pred, s=8, alpha=0.5)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=1)
    ax.set(xlabel=f"actual {label}", ylabel=f"predicted {label}", title="Holdout: predicted vs actual")
    fig.tight_layout()
    paths.append(directory / "predicted_vs_actual.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    order = np.argsort(importance)[::-1][:20][::-1]
    fig, ax = plt.subplots(figsize=(6, max(3, 0.28 * len(order) + 1)))
    ax.barh([names[i] for i in order], importance[order])
    ax.set(xlabel="relative importance", title="Feature importance (top 20)")
    fig.tight_layout()
    paths.append(directory / "feature_importance.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths
