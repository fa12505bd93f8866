"""``python -m rollout`` — the same commands as ``housing rollout``."""

from rollout.cli import app

app(prog_name="python -m rollout")
