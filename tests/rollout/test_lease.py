"""LeaseState: what `housing rollout status` (and --json) says about the run that holds a rollout."""

from datetime import UTC, datetime, timedelta

from rollout.lease import LeaseState

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def test_a_live_lease_as_json_has_its_holder_expiry_and_progress():
    state = LeaseState("alice@ci:1:aa", NOW - timedelta(seconds=60), NOW - timedelta(seconds=5), 30, {"weight": "50"})
    data = state.to_dict(NOW)
    assert data["live"] is True and data["holder"] == "alice@ci:1:aa"
    assert datetime.fromisoformat(data["expires"]) == NOW + timedelta(seconds=25)
    assert data["progress"] == {"weight": "50"} and data["duration_seconds"] == 30
    assert "held by alice@ci:1:aa (expires in 25 s); weight=50" == state.describe(NOW)


def test_an_expired_lease_is_not_live_and_says_the_run_stopped():
    state = LeaseState("bob@ci:2:bb", NOW - timedelta(minutes=5), NOW - timedelta(seconds=31), 30, {"step": "2/2"})
    assert state.to_dict(NOW)["live"] is False
    assert "expired" in state.describe(NOW) and "step=2/2" in state.describe(NOW)


def test_a_released_lease_has_no_holder_and_keeps_the_last_outcome():
    state = LeaseState(None, None, None, 30, {"outcome": "promoted"})
    data = state.to_dict(NOW)
    assert data == {
        "holder": None,
        "live": False,
        "acquired": None,
        "renewed": None,
        "expires": None,
        "duration_seconds": 30,
        "progress": {"outcome": "promoted"},
    }
    assert state.describe(NOW) == "free; last run: outcome=promoted"
