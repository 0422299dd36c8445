"""The deferrable import trigger, run on an event loop against the sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import importlib
import time

import pytest

from airflow_provider_constantcontact.exceptions import ConstantContactAuthError, ConstantContactServerError
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
from airflow_provider_constantcontact.triggers.constantcontact import ConstantContactImportTrigger
from airflow_provider_constantcontact.utils.activities import ActivityPoller
from tests.conftest import start_imports

CONN_ID = "constantcontact_default"


def make_trigger(
    ids, *, timeout: float = 30, poll_interval: float = 0.1, **kwargs
) -> ConstantContactImportTrigger:
    return ConstantContactImportTrigger(
        activity_ids=ids,
        constantcontact_conn_id=CONN_ID,
        poll_interval=poll_interval,
        end_time=time.time() + timeout,
        **kwargs,
    )


async def collect(trigger: ConstantContactImportTrigger, limit: float = 60) -> list[dict]:
    """Run the trigger to its end; every event's payload, in order."""

    async def run() -> list[dict]:
        return [event.payload async for event in trigger.run()]

    return await asyncio.wait_for(run(), timeout=limit)


def test_serialize_round_trips():
    trigger = ConstantContactImportTrigger(
        activity_ids=["a1", "a2"],
        constantcontact_conn_id="cc_prod",
        poll_interval=15,
        end_time=1_900_000_000.5,
        max_error_ratio=0.25,
        max_poll_interval=120,
    )
    classpath, kwargs = trigger.serialize()
    assert (
        classpath == "airflow_provider_constantcontact.triggers.constantcontact.ConstantContactImportTrigger"
    )
    assert kwargs == {
        "activity_ids": ["a1", "a2"],
        "constantcontact_conn_id": "cc_prod",
        "poll_interval": 15.0,
        "end_time": 1_900_000_000.5,
        "max_error_ratio": 0.25,
        "max_poll_interval": 120,
        "resume_state": None,
    }
    module_name, class_name = classpath.rsplit(".", 1)
    rebuilt = getattr(importlib.import_module(module_name), class_name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_serialize_accepts_a_datetime_end_time():
    from datetime import datetime, timezone

    end = datetime(2030, 1, 1, tzinfo=timezone.utc)
    trigger = ConstantContactImportTrigger(["a"], CONN_ID, 5, end)
    assert trigger.serialize()[1]["end_time"] == end.timestamp()


async def test_success_yields_one_event_with_the_summary(default_conn_sandbox):
    default_conn_sandbox.processing_rate = 20  # 10 contacts: the first polls see the import running
    ids = start_imports(default_conn_sandbox, count=2)

    events = await collect(make_trigger(ids, max_error_ratio=0.5))

    assert len(events) == 1
    assert events[0]["status"] == "success"
    summary = events[0]["summary"]
    assert summary["done"] is True
    assert set(summary["activities"]) == set(ids)
    assert summary["totals"]["items_total_count"] == 10
    assert all(a["state"] == "completed" for a in summary["activities"].values())


@pytest.mark.parametrize("state", ["failed", "cancelled", "timed_out"])
async def test_failed_activity_yields_an_error_event_with_its_errors(default_conn_sandbox, state):
    default_conn_sandbox.fail_next_activity(errors=["Import file rejected: bad encoding"], state=state)
    ids = start_imports(default_conn_sandbox, count=1)

    events = await collect(make_trigger(ids))

    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert f"activity {ids[0]} ended {state}: Import file rejected: bad encoding" in events[0]["message"]
    assert events[0]["summary"]["activities"][ids[0]]["state"] == state


async def test_timeout_event_when_end_time_passes(default_conn_sandbox):
    default_conn_sandbox.processing_rate = 0.01
    ids = start_imports(default_conn_sandbox, count=1)
    started = time.monotonic()

    events = await collect(make_trigger(ids, timeout=1, poll_interval=0.2))

    assert time.monotonic() - started < 5
    assert len(events) == 1
    assert events[0]["status"] == "timeout"
    assert ids[0] in events[0]["message"]
    assert events[0]["summary"]["done"] is False


async def test_transient_error_mid_poll_is_logged_and_polling_goes_on(
    default_conn_sandbox, monkeypatch, caplog, capsys
):
    default_conn_sandbox.processing_rate = 20
    ids = start_imports(default_conn_sandbox, count=2)
    real_poll = ActivityPoller.poll
    calls = []

    def flaky_poll(self, hook):
        calls.append(1)
        if len(calls) == 2:  # the hook's own retries are spent: the trigger sees the error
            raise ConstantContactServerError("Constant Contact answered 503 six times", status=503)
        return real_poll(self, hook)

    monkeypatch.setattr(ActivityPoller, "poll", flaky_poll)
    events = await collect(make_trigger(ids))

    assert [e["status"] for e in events] == ["success"]
    assert len(calls) >= 3
    # The trigger logs through Airflow's structured logger (stdout here, the trigger log in Airflow).
    assert "Polling Constant Contact activities failed, will retry" in capsys.readouterr().out + caplog.text


async def test_dropped_connections_mid_poll_do_not_end_the_wait(default_conn_sandbox):
    """Real HTTP faults: the hook retries dropped connections; the trigger still succeeds."""
    ids = start_imports(default_conn_sandbox, count=1)
    default_conn_sandbox.drop_next(2, path_prefix="/v3/activities")
    events = await collect(make_trigger(ids))
    assert [e["status"] for e in events] == ["success"]


async def test_non_transient_error_ends_with_an_error_event(default_conn_sandbox, monkeypatch):
    ids = start_imports(default_conn_sandbox, count=1)

    def refused(self, hook):
        raise ConstantContactAuthError("The refresh token was revoked: re-authorise the connection")

    monkeypatch.setattr(ActivityPoller, "poll", refused)
    events = await collect(make_trigger(ids))
    assert events == [
        {
            "status": "error",
            "message": "The refresh token was revoked: re-authorise the connection",
            "summary": None,
        }
    ]


async def test_unknown_connection_ends_with_an_error_event(default_conn_sandbox):
    trigger = ConstantContactImportTrigger(["a"], "no_such_connection", 0.1, time.time() + 10)
    events = await collect(trigger)
    assert len(events) == 1
    assert events[0]["status"] == "error"
    assert "no_such_connection" in events[0]["message"]


async def test_blocking_http_runs_off_the_event_loop(default_conn_sandbox, monkeypatch):
    ids = start_imports(default_conn_sandbox, count=1)
    real_poll = ActivityPoller.poll

    def slow_poll(self, hook):
        time.sleep(0.5)  # a slow API call
        return real_poll(self, hook)

    monkeypatch.setattr(ActivityPoller, "poll", slow_poll)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    events = await collect(make_trigger(ids))
    elapsed = time.monotonic() - started
    ticking.cancel()

    assert events[0]["status"] == "success"
    # The loop kept running while the poll slept in its thread.
    assert ticks >= (elapsed / 0.02) * 0.5


async def test_restart_re_polls_by_id(default_conn_sandbox):
    """A triggerer restart rebuilds the trigger from its serialized kwargs and carries on."""
    default_conn_sandbox.processing_rate = 5  # 5 contacts: about a second
    ids = start_imports(default_conn_sandbox, count=1)
    first = make_trigger(ids, poll_interval=0.1)

    with pytest.raises(asyncio.TimeoutError):
        await collect(first, limit=0.3)  # the triggerer dies mid-wait

    classpath, kwargs = first.serialize()
    events = await collect(ConstantContactImportTrigger(**kwargs))
    assert events[0]["status"] == "success"
    assert set(events[0]["summary"]["activities"]) == set(ids)


async def test_waits_for_imports_and_removals_together(default_conn_sandbox):
    default_conn_sandbox.processing_rate = 10  # 10 contacts and 5 removals: about a second
    import_ids = start_imports(default_conn_sandbox, count=2)
    list_id = default_conn_sandbox.create_list(f"Mirror {time.monotonic_ns()}")
    contact_ids = default_conn_sandbox.add_list_members(list_id, [f"left{n}@example.com" for n in range(5)])
    default_conn_sandbox.add_list_members(list_id, ["stays@example.com"])
    removal = ConstantContactHook(CONN_ID).remove_list_memberships(contact_ids, [list_id])
    ids = [*import_ids, removal["activity_id"]]

    events = await collect(make_trigger(ids, poll_interval=0.2, max_poll_interval=0.2, max_error_ratio=0))

    assert [event["status"] for event in events] == ["success"]
    summary = events[0]["summary"]
    assert set(summary["activities"]) == set(ids)
    assert summary["activities"][removal["activity_id"]]["status"]["list_count"] == 1
    assert summary["totals"]["items_total_count"] == summary["totals"]["items_completed_count"] == 15
    assert default_conn_sandbox.list_member_emails(list_id) == {"stays@example.com"}


async def test_one_request_per_poll(default_conn_sandbox):
    default_conn_sandbox.processing_rate = 10
    ids = start_imports(default_conn_sandbox, count=4, contacts_each=3)  # about 1.2 s
    since = len(default_conn_sandbox.request_log)

    events = await collect(make_trigger(ids, poll_interval=0.2, max_poll_interval=0.2))

    assert events[0]["status"] == "success"
    paths = [
        e.path.rstrip("/") for e in default_conn_sandbox.request_log[since:] if e.path.startswith("/v3/")
    ]
    assert paths, "no poll was made"
    assert set(paths) == {"/v3/activities"}
