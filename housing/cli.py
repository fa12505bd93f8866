"""The ``housing`` command: one front door to training, serving, rollouts and benchmarks.

Each package owns its sub-commands (``training.cli``, ``predictor.client.cli``, ``rollout.cli``,
``bench.cli``); this module only mounts them, importing lazily so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import os

import typer

app = typer.Typer(
    name="housing",
    help=(
        "Housing-price models on Kubernetes: train → serve (KServe V1/V2) → canary rollout.\n\n"
        "With no MLFLOW_TRACKING_URI or AWS_ENDPOINT_URL set, everything runs embedded: MLflow in "
        "./.housing/mlflow.db and bundles under ./.housing/bundles. Library messages (MLflow, "
        "warnings) go to ./.housing/logs/libraries.log; -v shows them instead."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


#: Sub-commands that drive MLflow (its INFO lines and progress bars would land between our tables).
_MLFLOW_COMMANDS = {"train", "bundles", "rollout", "demo"}


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show library log messages and warnings on stderr."),
) -> None:
    if verbose:
        os.environ["HOUSING_VERBOSE"] = "1"
    elif ctx.invoked_subcommand in _MLFLOW_COMMANDS and not ctx.resilient_parsing:
        from common.config import load_settings
        from housing.noise import route_library_noise

        route_library_noise(load_settings().home)


def _mount(module: str, attr: str, name: str, group: bool = False) -> None:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:  # a package not built yet must not break the others
        if exc.name and module.startswith(exc.name):
            return
        raise
    obj = getattr(mod, attr)
    if group:
        app.add_typer(obj, name=name)
    else:
        app.command(name)(obj)


_mount("training.cli", "train", "train")
_mount("training.bundles_cli", "app", "bundles", group=True)
_mount("predictor.client.cli", "serve", "serve")
_mount("predictor.client.cli", "predict", "predict")
_mount("rollout.cli", "app", "rollout", group=True)
_mount("monitor.cli", "feedback", "feedback")
_mount("monitor.cli", "quality", "quality")
_mount("monitor.cli", "drift_app", "drift", group=True)
_mount("bench.cli", "bench", "bench")
_mount("housing.demo", "demo", "demo")

if __name__ == "__main__":
    app()
