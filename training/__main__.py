"""``python -m training``: the training Job's entrypoint (same flags as ``housing train``)."""

from __future__ import annotations

import typer

from training.cli import train


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(train)
    app(prog_name="python -m training")


if __name__ == "__main__":
    main()
