"""predictor.guard.budget, Guard.admit and Guard.wait_rpc: request-body bytes in flight, refused when they would
not fit; gRPC call slots, with a bounded queue of calls waiting for one."""

from __future__ import annotations

import asyncio

import pytest

from predictor.guard.budget import InflightBytes, QueuedSlots
from predictor.guard.policy import OVERLOADED, Guard, GuardConfig, overloaded_message


def test_charges_up_to_the_limit_and_gives_back():
    budget = InflightBytes(100)
    assert budget.try_acquire(60) and budget.try_acquire(40)
    assert not budget.try_acquire(1) and budget.used == 100  # a refusal charges nothing
    budget.release(60)
    assert budget.try_acquire(50) and budget.used == 90


def test_admit_refuses_with_503_retry_after_and_counts():
    refused = []
    guard = Guard(GuardConfig(max_body_bytes=10, max_inflight_body_bytes=15), on_refused=lambda p, r: refused.append(r))
    assert guard.admit("v1", 10) is None
    refusal = guard.admit("v2", 10)
    assert refusal is not None and refusal.status == 503 and refusal.headers == {"retry-after": "1"}
    assert "--max_inflight_body_bytes" in refusal.message and refused == [OVERLOADED]
    guard.inflight.release(10)
    assert guard.admit("v2", 10) is None


def test_rest_and_grpc_refuse_overload_alike_each_within_the_one_limit():
    """REST's 503 and gRPC's RESOURCE_EXHAUSTED give the same reason: the limit and how to raise it."""
    refused = []
    guard = Guard(GuardConfig(max_concurrency=2, max_queued_rpcs=0), on_refused=lambda p, r: refused.append((p, r)))
    assert guard.start_request("v1") is None and guard.start_request("v2") is None
    assert guard.start_rpc() and guard.start_rpc()  # REST's slots are not gRPC's, as before
    assert not guard.start_rpc()
    rest, rpc = guard.start_request("v1"), asyncio.run(guard.wait_rpc())  # no queue: refused at once
    assert rest is not None and rpc is not None
    assert rest == rpc and rest.status == 503 and rest.headers == {"retry-after": "1"}
    assert "busy: 2 requests in progress" in rest.message and "--max_concurrency" in rest.message
    assert refused == [("v1", OVERLOADED), ("grpc", OVERLOADED)]
    guard.rpcs.release()
    assert guard.start_rpc()


def test_grpc_calls_over_the_cap_wait_in_turn_and_only_a_full_queue_is_refused_naming_both_limits():
    refused = []
    guard = Guard(GuardConfig(max_concurrency=1, max_queued_rpcs=2), on_refused=lambda p, r: refused.append(r))
    order: list[str] = []

    async def call(name: str) -> None:
        refusal = await guard.wait_rpc()
        if refusal is not None:
            order.append(f"{name} refused: {refusal.message}")
            return
        order.append(name)
        await asyncio.sleep(0)
        guard.rpcs.release()

    async def main() -> None:
        assert guard.start_rpc()  # the one slot, held
        tasks = [asyncio.create_task(call(name)) for name in ("a", "b", "c")]
        await asyncio.sleep(0)
        assert guard.rpcs.waiting == 2 and guard.rpcs.used == 1 and order[0].startswith("c refused")
        assert not guard.start_rpc()  # a newcomer does not pass the queue
        guard.rpcs.release()  # handed to "a", then "a" hands it to "b"
        await asyncio.gather(*tasks)
        assert guard.rpcs.used == 0 and guard.rpcs.waiting == 0

    asyncio.run(main())
    assert order[1:] == ["a", "b"], order
    assert "1 calls in progress and 2 waiting" in order[0] and "--max_queued_rpcs" in order[0], order[0]
    assert "--max_concurrency" in order[0] and refused == [OVERLOADED]
    assert overloaded_message(1, 2) in order[0]


def test_a_call_cancelled_while_it_waits_leaves_the_queue_and_passes_on_a_slot_handed_to_it():
    slots = QueuedSlots(1, 5)

    async def main() -> None:
        assert slots.try_acquire()
        gone = asyncio.create_task(slots.wait())  # its client leaves before a slot frees
        handed = asyncio.create_task(slots.wait())  # gets the slot, but is cancelled before it runs
        last = asyncio.create_task(slots.wait())
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        assert slots.waiting == 2 and slots.used == 1
        slots.release()  # to "handed"
        handed.cancel()  # before it resumed: the slot goes on to "last"
        await asyncio.gather(gone, handed, return_exceptions=True)
        await asyncio.wait_for(last, 5)
        assert slots.used == 1 and slots.waiting == 0
        slots.release()
        assert slots.used == 0

    asyncio.run(main())


def test_the_queue_defaults_to_16_calls_per_slot():
    assert GuardConfig(max_concurrency=64).queued_rpcs == 1024
    assert GuardConfig(max_concurrency=3, max_queued_rpcs=0).queued_rpcs == 0


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"max_body_bytes": 20, "max_inflight_body_bytes": 10}, "--max_inflight_body_bytes"),
        ({"max_concurrency": 0}, "--max_concurrency"),
        ({"max_queued_rpcs": -1}, "--max_queued_rpcs"),
    ],
)
def test_settings_that_cannot_work_are_refused(settings, flag):
    with pytest.raises(ValueError, match=flag):
        GuardConfig(**settings).validate()
