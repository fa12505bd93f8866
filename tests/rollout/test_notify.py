"""rollout.notify: JSON POSTs to a real loopback receiver, in order, retried, never blocking."""

from __future__ import annotations

import time

from common.net import free_port
from rollout.notify import Notifier
from testkit.poll import poll
from testkit.webhook import WebhookReceiver


def test_events_arrive_in_order_and_failed_posts_are_retried():
    with WebhookReceiver(fail_first=2) as hook:
        notifier = Notifier(hook.url, timeout=2, retries=3, backoff=0.05)
        for i in range(5):
            notifier.send({"event": "step", "step": i})
        notifier.close()
        assert [b["step"] for b in hook.bodies] == [0, 1, 2, 3, 4]
        assert hook.attempts == 7  # the first event took three attempts
        assert notifier.counts()["sent"] == 5 and notifier.failures == 0


def test_an_endpoint_that_is_down_is_counted_and_never_blocks():
    notifier = Notifier(f"http://127.0.0.1:{free_port()}/hook", timeout=1, retries=1, backoff=0.01)
    started = time.monotonic()
    for i in range(3):
        notifier.send({"event": "step", "step": i})
    queued = time.monotonic() - started
    print(f"3 sends to a closed port returned after {queued * 1000:.2f} ms")
    poll(lambda: notifier.failures, lambda n: n == 3, timeout=30)
    assert notifier.sent == 0 and "ConnectError" in (notifier.last_error or "")
    notifier.close()


def test_a_refusing_endpoint_counts_failures():
    with WebhookReceiver(status=503) as hook:
        notifier = Notifier(hook.url, timeout=1, retries=2, backoff=0.01)
        notifier.send({"event": "promote"})
        notifier.close()
        assert notifier.failures == 1 and hook.attempts == 3 and notifier.last_error == "HTTP 503"
