"""The rollout runner: ``housing rollout auto``, rollouts that run themselves inside the cluster.

One loop, one process (the chart's ``rollout.auto`` Deployment): every ``poll`` seconds it asks the
MLflow registry for the ``challenger`` alias; a version that is not the champion and was never
rejected is rolled out exactly as ``housing rollout run -b standard`` does it
(:func:`rollout.orchestrator.run_rollout`: the offline quality gate, the canary steps judged from
Prometheus, promote or roll back, the aliases moved). Leadership is the rollout Lease that run
takes: a second runner, or someone's ``housing rollout run``, waits while it is held; a runner
killed mid-rollout leaves the Lease (released with its progress on SIGTERM, else expiring) and the
next one resumes from the recorded step with the same canary pods.

Every event of a rollout — and what the runner waits for (MLflow unreachable, the Lease busy) — is
published three ways (:meth:`Runner.publish`): a line in the runner's log, a Kubernetes Event on the
InferenceService (:mod:`rollout.kube_events`) and, when a URL is set, a JSON POST
(:mod:`rollout.notify`).

A rollout that needs a human: with ``pause_at`` the walk stops once that step's weight is set and
waits until ``housing rollout resume`` (or ``housing rollout rollback``) writes a command onto the
Lease (:class:`LeaseCommands`). A challenger refused by the quality gate or rolled back is tagged
``rollout_status=rejected`` and loses the ``challenger`` alias: it is never tried again unless
someone asks (``housing rollout retry VERSION``).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from common.config import ALIAS_CHALLENGER, ALIAS_CHAMPION, load_settings
from registry import lifecycle as registry
from rollout.analysis import Verdict
from rollout.backends.base import Backend, OnInferenceService, RolloutError
from rollout.event_log import EventLog, new_log
from rollout.lease import GROUP, PLURAL, PROGRESS_PREFIX, VERSION, lease_name
from rollout.orchestrator import GateRefused, RunOptions, UsageError, registry_reject, run_rollout

Echo = Callable[[str], Any]

#: Lease annotations (under rollout.housing.dev/) the runner and the CLI talk through
COMMAND, PAUSED_AT = "command", "paused-at"
RESUME, ROLLBACK = "resume", "rollback"
#: seconds between two looks at the Lease while paused
PAUSE_POLL = 2.0


class RolloutStopped(Exception):
    """A rollout ended by a person while it was paused (``housing rollout rollback``)."""


@dataclass
class AutoOptions:
    """What ``housing rollout auto`` was asked for: the poll interval, the pause, the run itself."""

    run: RunOptions
    poll: float = 30.0
    pause_at: int = 0  # 0: never pause; else a step of run.steps


class PublishingLog(EventLog):
    """The rollout's event log (JSON lines) that also hands every record to ``publish``."""

    def __init__(self, path: Path, publish: Callable[[dict[str, Any]], Any]) -> None:
        super().__init__(path)
        self.publish = publish

    def write(self, event: str, **data: Any) -> dict[str, Any]:
        record = super().write(event, **data)
        self.publish(record)
        return record


# -- the Lease as a mailbox ---------------------------------------------------------------------
class LeaseCommands:
    """Annotations on the rollout Lease: ``paused-at`` (the runner), ``command`` (resume/rollback)."""

    def __init__(self, api: Any, namespace: str, isvc: str) -> None:
        self.api, self.namespace, self.name = api, namespace, lease_name(isvc)

    def _get(self) -> dict | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) == 404:
                return None
            raise RolloutError(f"cannot read Lease {self.namespace}/{self.name}: {str(exc)[:200]}") from exc

    def read(self) -> dict[str, str]:
        """The Lease's rollout.housing.dev/ annotations (empty when there is no Lease)."""
        obj = self._get() or {}
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        return {k[len(PROGRESS_PREFIX) :]: v for k, v in annotations.items() if k.startswith(PROGRESS_PREFIX)}

    def update(self, set_: dict[str, str] | None = None, remove: tuple[str, ...] = ()) -> None:
        """Set and remove annotations (re-read and retried when the holder renewed in between)."""
        for _attempt in range(8):
            obj = self._get()
            if obj is None:
                raise RolloutError(f"Lease {self.namespace}/{self.name} does not exist: no rollout has run yet")
            annotations = obj.setdefault("metadata", {}).setdefault("annotations", {}) or {}
            obj["metadata"]["annotations"] = annotations
            for key in remove:
                annotations.pop(PROGRESS_PREFIX + key, None)
            for key, value in (set_ or {}).items():
                annotations[PROGRESS_PREFIX + key] = str(value)
            try:
                self.api.replace_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name, obj)
                return
            except Exception as exc:  # noqa: BLE001
                if getattr(exc, "status", None) == 409:
                    continue
                raise RolloutError(f"cannot write Lease {self.namespace}/{self.name}: {str(exc)[:200]}") from exc
        raise RolloutError(f"Lease {self.namespace}/{self.name} kept changing; try again")

    def command(self) -> str | None:
        return self.read().get(COMMAND) or None

    def ask(self, command: str) -> dict[str, str]:
        """Leave ``command`` for a paused runner; RolloutError when no rollout waits at a pause."""
        state = self.read()
        if not state.get(PAUSED_AT):
            where = ", ".join(f"{k}={v}" for k, v in sorted(state.items())) or "no rollout yet"
            raise RolloutError(f"no rollout is paused (Lease {self.namespace}/{self.name}: {where})")
        self.update({COMMAND: command})
        return state


# -- what a record says, in one line ---------------------------------------------------------------
def _gates(gates: list[dict[str, Any]]) -> str:
    parts = []
    for g in gates or []:
        value = g.get("value")
        shown = "-" if value is None else f"{value:.4g}" if isinstance(value, int | float) else str(value)
        parts.append(f"{g.get('name')}={shown}{'' if g.get('passed') else ' FAIL'}")
    return ", ".join(parts)


def _inconclusive(record: dict[str, Any]) -> str:
    at = (record.get("status") or {}).get("challenger_percent")
    where = f"held at {at}%" if at is not None else "held"
    return f"{where}, nothing promoted or rolled back: {record.get('reason')}"


def _live_gate(record: dict[str, Any]) -> str:
    required = "required" if record.get("require_labels") else "not required"
    days, tolerance = record.get("days"), record.get("tolerance")
    return (
        f"live gate on {record.get('log_uri')}: {record.get('challenger')} against {record.get('champion')}, "
        f"≥ {record.get('min_labels')} labelled rows each in the last {days:g} days ({required}), "
        f"RMSE within +{tolerance:.1%} of the champion's"
    )


def summarize(record: dict[str, Any]) -> tuple[str, str, bool]:
    """(Event reason, message, is a warning) for one event-log record or runner note."""
    kind = record.get("event", "?")
    if kind == "step":
        w = record.get("weights") or {}
        text = f"step {record.get('step')}: champion {w.get('champion')}% / challenger {w.get('challenger')}%: "
        text += str(record.get("decision"))
        if record.get("gates"):
            text += f"; gates {_gates(record['gates'])}"
        if record.get("reasons"):
            text += f"; {'; '.join(map(str, record['reasons']))}"
        return "RolloutStep", text, str(record.get("decision")) == "rollback"
    if kind == "start":
        return (
            "RolloutStarted",
            f"challenger {record.get('challenger')} ({record.get('challenger_uri') or 'already running'}) "
            f"against champion {record.get('champion')}; steps {(record.get('config') or {}).get('steps')}",
            False,
        )
    if kind == "quality_gate":
        refused = record.get("decision") == "refused"
        return "QualityGate", f"{record.get('decision')}: {record.get('reason', '')}", refused
    simple = {
        "ready": ("CanaryReady", lambda r: f"canary Ready after {r.get('seconds')} s", False),
        "resume": ("RolloutAdopted", lambda r: f"resuming a stopped run: steps {r.get('steps')}", False),
        "reconcile": ("RolloutReconciled", lambda r: f"finished the registry step of {r.get('challenger_uri')}", False),
        "promote": ("RolloutPromoted", lambda r: f"challenger promoted ({r.get('failures', 0)} failed steps)", False),
        "rollback": ("RolloutRolledBack", lambda r: f"rolled back: {r.get('reason')}", True),
        "pause": ("RolloutPaused", lambda r: f"paused at {r.get('weight')}%: `housing rollout resume` to go on", False),
        "resumed": ("RolloutResumed", lambda r: f"resumed at {r.get('weight')}% by a person", False),
        "refused": ("ChallengerRefused", lambda r: f"version {r.get('version')} refused: {r.get('reason')}", True),
        "waiting": ("RolloutWaiting", lambda r: str(r.get("reason")), True),
        "mismatch": ("ChampionMismatch", lambda r: str(r.get("reason")), True),
        "runner": ("RunnerStarted", lambda r: str(r.get("reason")), False),
        "inconclusive": ("RolloutInconclusive", _inconclusive, True),
        "live_gate": ("RolloutLiveGate", _live_gate, False),
    }
    if kind in simple:
        reason, text, warning = simple[kind]
        return reason, text(record), warning
    return "Rollout" + kind.title().replace("_", ""), str({k: v for k, v in record.items() if k != "ts"}), False


# -- the runner --------------------------------------------------------------------------------------
class Runner:
    """Poll MLflow, roll each new challenger out, publish every event."""

    def __init__(
        self,
        backend: Backend,
        options: AutoOptions,
        echo: Echo,
        *,
        recorder: Any | None = None,
        notifier: Any | None = None,
        commands: LeaseCommands | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.backend, self.options, self.echo = backend, options, echo
        self.recorder, self.notifier, self.commands = recorder, notifier, commands
        self.stop = stop or threading.Event()
        self.settings = load_settings()
        self.rejected: set[str] = set()  # versions rejected here whose registry tag is still pending
        self._last_note: tuple[str, str] | None = None
        self._current: dict[str, Any] = {}

    # -- publishing --------------------------------------------------------------------------
    def publish(self, record: dict[str, Any]) -> None:
        """One event: a log line, a Kubernetes Event on the InferenceService, a webhook POST."""
        reason, message, warning = summarize(record)
        self.echo(f"{'WARNING ' if warning else ''}{reason}: {message}")
        if self.recorder is not None:
            self.recorder.record(reason, message, warning)
        if self.notifier is not None:
            be = self.backend
            on = isinstance(be, OnInferenceService)  # the local backend serves no InferenceService
            where = {"inferenceservice": be.isvc if on else None, "namespace": be.namespace if on else None}
            self.notifier.send({**record, "reason": reason, "message": message, **where, **self._current})

    def note(self, event: str, *, once: bool = True, **data: Any) -> None:
        """Publish a runner event (not part of a rollout's log); ``once``: not again while unchanged."""
        key = (event, re.sub(r"\d+", "#", str(data.get("reason"))))  # "expires in 41 s" is no news
        if once and key == self._last_note:
            return
        self._last_note = key
        self.publish({"ts": time.time(), "event": event, **data})

    # -- one look at the registry ------------------------------------------------------------
    def poll_once(self) -> str:
        """Roll out the challenger if there is a new one; what happened: idle, waiting, refused,
        promoted, rolled back, inconclusive (not enough evidence: neither rejected nor promoted)."""
        model = self.settings.model_name
        try:
            # a missing alias and an unreachable server look alike to resolve(): ask /health first
            registry.Registry(self.settings.tracking_uri, self.settings.home).check()
            roles = registry.resolve(model)
        except Exception as exc:  # noqa: BLE001 - any registry failure: wait and say so
            why = f"MLflow at {self.settings.tracking_uri} unreachable ({registry.short_error(exc)[:200]}); retrying"
            self.note("waiting", reason=why)
            return "waiting"
        chall, champ = roles.get(ALIAS_CHALLENGER), roles.get(ALIAS_CHAMPION)
        self._check_champion(champ)
        if chall is None or not chall.bundle_uri:
            return "idle"
        if champ is not None and chall.version == champ.version:  # the first version holds both aliases
            return "idle"
        if chall.tags.get(registry.TAG_STATUS) == "rejected":
            return "idle"
        if chall.version in self.rejected:  # rejected here, the tag did not reach MLflow yet: retry the tag
            if registry_reject(chall.version, "rejected by the rollout runner", self.echo) is None:
                self.rejected.discard(chall.version)
            return "idle"
        return self._roll_out(chall.version, chall.bundle_uri)

    def _check_champion(self, champ: Any) -> None:
        """Say so (once) when the cluster serves another champion than MLflow's (e.g. a helm rollback)."""
        if champ is None or not champ.bundle_uri:
            return
        try:
            status = self.backend.status()
        except RolloutError:
            return
        if status.challenger is None and status.champion and status.champion != champ.bundle_uri:
            self.note(
                "mismatch",
                reason=f"the InferenceService serves {status.champion} but MLflow's champion is version "
                f"{champ.version} ({champ.bundle_uri}): a helm rollback or a manual edit? nothing is changed",
            )

    def _roll_out(self, version: str, uri: str) -> str:
        self._current = {"challenger_version": version, "challenger_uri": uri}
        log = PublishingLog(new_log(self.settings.home, self.options.run.name or "rollout").path, self.publish)
        try:
            outcome = run_rollout(
                self.backend, replace(self.options.run), self.echo, lambda _s: None, log=log, step_hook=self._step_hook
            )
        except GateRefused as exc:
            self._reject(version, str(exc))
            self.note("refused", once=False, version=version, reason=str(exc))
            return "refused"
        except RolloutStopped as exc:
            self.echo(str(exc))
            return "rolled back"
        except UsageError as exc:
            self.note("waiting", reason=f"{exc}; retrying")
            return "waiting"
        except RolloutError as exc:
            self.note("waiting", reason=f"{exc}; retrying in {self.options.poll:.0f} s")
            return "waiting"
        finally:
            self._current = {}
        self._last_note = None
        if outcome.registry_pending:
            self.note("waiting", reason=f"registry step not done: {outcome.registry_pending}")
        if outcome.decision == Verdict.INCONCLUSIVE:  # neither verdict: the same challenger again next poll
            self.note("waiting", reason=f"inconclusive: {outcome.reason}; trying again at the next poll")
            return "inconclusive"
        if outcome.decision != "promoted":
            if outcome.registry_pending:
                self.rejected.add(version)
            return "rolled back"
        return "promoted"

    def _reject(self, version: str, reason: str) -> None:
        if registry_reject(version, reason, self.echo) is not None:
            self.rejected.add(version)

    # -- pause --------------------------------------------------------------------------------
    def _step_hook(self, progress: dict[str, Any]) -> None:
        weight = int(progress.get("weight", 0))
        if not self.options.pause_at or weight != self.options.pause_at or self.commands is None:
            return
        self.commands.update({PAUSED_AT: str(weight)}, remove=(COMMAND,))
        self.publish({"ts": time.time(), "event": "pause", "weight": weight})
        while True:
            if self.stop.wait(PAUSE_POLL):
                raise SystemExit(0)  # SIGTERM while paused: the next runner pauses here again
            try:
                command = self.commands.command()
            except RolloutError as exc:
                self.echo(f"  pause: {exc}")
                continue
            if command is None:
                continue
            self.commands.update(remove=(COMMAND, PAUSED_AT))
            if command == RESUME:
                self.publish({"ts": time.time(), "event": "resumed", "weight": weight})
                return
            reason = command.partition(":")[2] or "rolled back by a person while paused"
            self._rollback_now(reason)
            raise RolloutStopped(f"rolled back while paused: {reason}")

    def _rollback_now(self, reason: str) -> None:
        """A person's rollback at the pause, done while the Lease is still held."""
        status = self.backend.rollback(reason)
        version = self._current.get("challenger_version")
        if version:
            self._reject(version, reason)
        self.publish({"ts": time.time(), "event": "rollback", "reason": reason, "status": status.to_dict()})

    # -- forever ------------------------------------------------------------------------------
    def run_forever(self, max_polls: int | None = None) -> None:
        """Poll until ``stop`` is set (SIGTERM) or ``max_polls`` looks were taken."""
        host = socket.gethostname()
        self.note("runner", reason=f"rollout runner {host} watching model {self.settings.model_name!r} in MLflow")
        polls = 0
        while not self.stop.is_set():
            self.poll_once()
            polls += 1
            if max_polls is not None and polls >= max_polls:
                return
            self.stop.wait(self.options.poll)
