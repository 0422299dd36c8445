"""The import sensor in poke, reschedule and deferrable modes, against the sandbox."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_constantcontact.exceptions import (
    ConstantContactAuthError,
    ConstantContactImportError,
    ConstantContactNotFoundError,
    ConstantContactQuotaExceededError,
)
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
from airflow_provider_constantcontact.sensors.constantcontact import ConstantContactImportSensor
from airflow_provider_constantcontact.triggers.constantcontact import ConstantContactImportTrigger
from airflow_provider_constantcontact.utils.activities import TERMINAL_STATES
from tests.airflow_compat import AirflowRescheduleException, AirflowSensorTimeout, TaskDeferred
from tests.conftest import start_imports

CONN_ID = "constantcontact_default"


def wait_done(sandbox, ids: list[str]) -> None:
    deadline = time.monotonic() + 30
    while not all(sandbox.get_activity(i)["state"] == "completed" for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def sensor(activity_ids, **kwargs) -> ConstantContactImportSensor:
    kwargs.setdefault("poke_interval", 0.1)
    kwargs.setdefault("timeout", 30)
    return ConstantContactImportSensor(task_id="wait_for_import", activity_ids=activity_ids, **kwargs)


def quick_hook() -> ConstantContactHook:
    """The connection's hook with its own retries cut short: two attempts, 10 ms apart."""
    return ConstantContactHook(
        CONN_ID, max_attempts=2, backoff_initial=0.01, backoff_max=0.01, backoff_jitter=0
    )


def listing_statuses(sandbox, since: int) -> list[int]:
    """Statuses of the activities listing requests since ``since`` (0: dropped connection)."""
    return [e.status for e in sandbox.request_log[since:] if e.path.rstrip("/") == "/v3/activities"]


def inject(sandbox, fault: str) -> None:
    """Make the next two listing requests (all of the quick hook's attempts) fail with ``fault``."""
    if fault == "dropped":
        sandbox.drop_next(2, path_prefix="/v3/activities")
    else:
        sandbox.fail_next(2, status=int(fault), path_prefix="/v3/activities")


class CounterlessListingHook(ConstantContactHook):
    """The connection's hook, but its activities listing drops finished activities' ``status``
    counters (as a listing may): only a per-id lookup then has them."""

    def iter_activities(self, **kwargs: Any) -> Iterator[dict]:
        for activity in super().iter_activities(**kwargs):
            if activity.get("state") in TERMINAL_STATES:
                activity = {key: value for key, value in activity.items() if key != "status"}
            yield activity


def start_staggered_imports(sandbox) -> list[str]:
    """Three imports at 10 contacts/s: two finish at once, the third after about 1.5 s."""
    sandbox.processing_rate = 10
    hook = ConstantContactHook(CONN_ID)
    list_id = sandbox.create_list(f"Staggered {time.monotonic_ns()}")
    sizes = (1, 1, 15)
    return [
        hook.import_contacts([{"email": f"g{n}.{i}@example.com"} for i in range(size)], [list_id])[
            "activity_id"
        ]
        for n, size in enumerate(sizes)
    ]


def activity_reads(sandbox, since: int) -> list[str]:
    """Paths of the activity reads since ``since``: the listing or a per-id lookup."""
    return [
        e.path.rstrip("/")
        for e in sandbox.request_log[since:]
        if e.method == "GET" and e.path.startswith("/v3/activities")
    ]


def assert_one_request_per_poll_then_counters_once(reads: list[str], ids: list[str]) -> None:
    """Every read is the listing except, at the very end, one lookup per activity for its counters."""
    lookups = [f"/v3/activities/{activity_id}" for activity_id in ids]
    assert sorted(reads[-len(ids) :]) == sorted(lookups), reads
    assert set(reads[: -len(ids)]) == {"/v3/activities"}, reads
    # Several polls saw the small imports finished while the large one still ran.
    assert len(reads) - len(ids) >= 4, reads


def reschedule_context() -> dict:
    ti = SimpleNamespace(get_first_reschedule_date=lambda context: None)
    return {"ti": ti}


# ----------------------------------------------------------------------------- poke mode
def test_poke_mode_waits_and_returns_the_summary(default_conn_sandbox):
    default_conn_sandbox.processing_rate = 10  # 10 contacts: about a second
    ids = start_imports(default_conn_sandbox, count=2)
    since = len(default_conn_sandbox.request_log)

    summary = sensor(ids, mode="poke", deferrable=False).execute({})

    assert summary["done"] is True
    assert set(summary["activities"]) == set(ids)
    assert summary["totals"]["items_total_count"] == 10
    polls = [e for e in default_conn_sandbox.request_log[since:] if e.path.startswith("/v3/")]
    assert len(polls) >= 2, "the sensor did not have to wait"
    assert {e.path.rstrip("/") for e in polls} == {"/v3/activities"}


def test_poke_mode_waits_for_imports_and_removals_together(default_conn_sandbox):
    """A mirror run waits for its imports and its removals of list memberships alike."""
    default_conn_sandbox.processing_rate = 10  # 5 contacts and 6 removals: about half a second each
    import_ids = start_imports(default_conn_sandbox, count=1)
    list_id = default_conn_sandbox.create_list(f"Mirror {time.monotonic_ns()}")
    contact_ids = default_conn_sandbox.add_list_members(list_id, [f"gone{n}@example.com" for n in range(6)])
    hook = ConstantContactHook(CONN_ID)
    removal_ids = [hook.remove_list_memberships(contact_ids[n::2], [list_id])["activity_id"] for n in (0, 1)]

    summary = sensor([*import_ids, *removal_ids], mode="poke", deferrable=False).execute({})

    assert summary["done"] is True
    assert {entry["state"] for entry in summary["activities"].values()} == {"completed"}
    assert summary["totals"]["items_total_count"] == 11
    assert summary["totals"]["list_count"] == 2
    assert summary["totals"]["person_count"] == 5
    assert default_conn_sandbox.list_member_emails(list_id) == set()


FAILED_STATES = ["failed", "cancelled", "timed_out"]


@pytest.mark.parametrize("state", FAILED_STATES)
def test_poke_mode_fails_with_the_activity_errors(default_conn_sandbox, state):
    default_conn_sandbox.fail_next_activity(
        errors=["Contacts could not be imported: list is locked"], state=state
    )
    ids = start_imports(default_conn_sandbox)
    with pytest.raises(ConstantContactImportError) as failure:
        sensor(ids, deferrable=False).execute({})
    assert f"activity {ids[0]} ended {state}: Contacts could not be imported: list is locked" in str(
        failure.value
    )


def test_poke_mode_times_out(default_conn_sandbox):
    default_conn_sandbox.processing_rate = 0.01
    ids = start_imports(default_conn_sandbox)
    with pytest.raises(AirflowSensorTimeout):
        sensor(ids, deferrable=False, timeout=0.5, poke_interval=0.1).execute({})


def test_max_error_ratio_fails_an_import_that_rejected_most_contacts(default_conn_sandbox):
    hook = ConstantContactHook(CONN_ID)
    list_id = default_conn_sandbox.create_list("Mostly invalid")
    contacts = [{"email": "ok@example.com"}] + [{"email": f"not-an-email-{i}"} for i in range(3)]
    ids = [hook.import_contacts(contacts, [list_id])["activity_id"]]
    wait_done(default_conn_sandbox, ids)
    record = default_conn_sandbox.get_activity(ids[0])
    assert record["status"]["error_count"] >= 3, record["status"]

    with pytest.raises(ConstantContactImportError, match="more than max_error_ratio"):
        sensor(ids, deferrable=False, max_error_ratio=0.5).execute({})
    assert sensor(ids, deferrable=False, max_error_ratio="0.9").execute({})["done"] is True


@pytest.mark.parametrize("form", ["one id", "list", "json string", "python string", "summary dict"])
def test_accepts_every_form_of_activity_ids(default_conn_sandbox, form):
    ids = start_imports(default_conn_sandbox, count=2)
    wait_done(default_conn_sandbox, ids)
    value = {
        "one id": ids[0],
        "list": ids,
        "json string": f'["{ids[0]}", "{ids[1]}"]',
        "python string": str(ids),
        "summary dict": {"activity_ids": ids, "rows_read": 10},
    }[form]
    summary = sensor(value, deferrable=False).execute({})
    assert set(summary["activities"]) == ({ids[0]} if form == "one id" else set(ids))


def test_no_activity_succeeds_at_once_without_a_request(default_conn_sandbox):
    since = len(default_conn_sandbox.request_log)
    for mode_kwargs in ({"deferrable": False}, {"deferrable": True}):
        summary = sensor([], **mode_kwargs).execute({})
        assert summary["activities"] == {}
        assert summary["done"] is True
    assert default_conn_sandbox.request_log[since:] == []


TRANSIENT_FAULTS = ["503", "429", "dropped"]  # server trouble, throttling, network


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
def test_poke_mode_rides_out_a_transient_error(default_conn_sandbox, fault, caplog, capsys):
    ids = start_imports(default_conn_sandbox)
    wait_done(default_conn_sandbox, ids)
    task = sensor(ids, mode="poke", deferrable=False)
    task.hook = quick_hook()
    inject(default_conn_sandbox, fault)
    since = len(default_conn_sandbox.request_log)

    summary = task.execute({})

    assert summary["done"] is True
    expected = 0 if fault == "dropped" else int(fault)
    assert listing_statuses(default_conn_sandbox, since) == [expected, expected, 200]
    # The error's kind and status only: no server text, which might echo personal data.
    label = {
        "503": "ConstantContactServerError (HTTP 503)",
        "429": "ConstantContactRateLimitError (HTTP 429)",
        "dropped": "ConstantContactServerError",
    }[fault]
    logged = capsys.readouterr().out + caplog.text
    assert f"Polling Constant Contact activities failed, will retry: {label}" in logged


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
def test_reschedule_mode_poke_is_not_done_after_a_transient_error(default_conn_sandbox, fault):
    ids = start_imports(default_conn_sandbox)
    wait_done(default_conn_sandbox, ids)
    inject(default_conn_sandbox, fault)
    first = sensor(ids, mode="reschedule", deferrable=False)
    first.hook = quick_hook()

    with pytest.raises(AirflowRescheduleException):  # not done: try again later, not a failure
        first.execute(reschedule_context())

    later = sensor(ids, mode="reschedule", deferrable=False)
    later.hook = quick_hook()
    assert later.execute(reschedule_context())["done"] is True


@pytest.mark.parametrize(
    ("make_fault", "error"),
    [
        (lambda sandbox: sandbox.exhaust_daily_quota(), ConstantContactQuotaExceededError),
        (lambda sandbox: sandbox.fail_next(1, status=403), ConstantContactAuthError),
        (lambda sandbox: sandbox.fail_next(1, status=404), ConstantContactNotFoundError),
    ],
    ids=["quota_exceeded", "forbidden", "not_found"],
)
@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_non_transient_errors_fail_the_task(default_conn_sandbox, make_fault, error, mode):
    ids = start_imports(default_conn_sandbox)
    task = sensor(ids, mode="poke" if mode == "deferrable" else mode, deferrable=mode == "deferrable")
    task.hook = quick_hook()
    make_fault(default_conn_sandbox)
    with pytest.raises(error):
        task.execute(reschedule_context())


def test_poke_mode_asks_for_counters_only_once_every_activity_finished(default_conn_sandbox):
    ids = start_staggered_imports(default_conn_sandbox)
    task = sensor(ids, mode="poke", deferrable=False, poke_interval=0.1)
    task.hook = CounterlessListingHook(CONN_ID)
    since = len(default_conn_sandbox.request_log)

    summary = task.execute({})

    assert_one_request_per_poll_then_counters_once(activity_reads(default_conn_sandbox, since), ids)
    assert summary["totals"]["items_total_count"] == 17  # the counters of the per-id lookups


# ----------------------------------------------------------------------------- reschedule mode
def test_reschedule_mode_asks_for_counters_only_once_every_activity_finished(default_conn_sandbox):
    ids = start_staggered_imports(default_conn_sandbox)
    since = len(default_conn_sandbox.request_log)
    deadline = time.monotonic() + 30
    while True:  # every poke is a new try, with a new sensor instance
        task = sensor(ids, mode="reschedule", deferrable=False)
        task.hook = CounterlessListingHook(CONN_ID)
        try:
            summary = task.execute(reschedule_context())
            break
        except AirflowRescheduleException:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    assert_one_request_per_poll_then_counters_once(activity_reads(default_conn_sandbox, since), ids)
    assert summary["totals"]["items_total_count"] == 17


def test_reschedule_mode_frees_the_slot_until_done(default_conn_sandbox):
    default_conn_sandbox.processing_rate = 0.5
    ids = start_imports(default_conn_sandbox, contacts_each=2)
    task = sensor(ids, mode="reschedule", deferrable=False, poke_interval=30)

    with pytest.raises(AirflowRescheduleException) as reschedule:
        task.execute(reschedule_context())
    assert reschedule.value.reschedule_date > datetime.now(timezone.utc) + timedelta(seconds=20)

    default_conn_sandbox.processing_rate = None
    wait_done(default_conn_sandbox, ids)
    summary = task.execute(reschedule_context())
    assert summary["done"] is True


@pytest.mark.parametrize("state", FAILED_STATES)
def test_reschedule_mode_fails_with_the_activity_errors(default_conn_sandbox, state):
    default_conn_sandbox.fail_next_activity(errors=["Activity stopped by support"], state=state)
    ids = start_imports(default_conn_sandbox)
    with pytest.raises(ConstantContactImportError) as failure:
        sensor(ids, mode="reschedule", deferrable=False).execute(reschedule_context())
    assert f"activity {ids[0]} ended {state}: Activity stopped by support" in str(failure.value)


@pytest.mark.parametrize(
    ("airflow_version", "as_sent"),
    [
        # Airflow 3.0's get_first_reschedule_date hands over the API's ISO string unparsed.
        ("3.0.6", lambda when: when.isoformat().replace("+00:00", "Z")),
        (None, lambda when: when),  # this Airflow, as its task instances return it
    ],
    ids=["string-on-3.0", "datetime"],
)
def test_reschedule_mode_measures_its_timeout_from_the_first_reschedule(
    default_conn_sandbox, monkeypatch, airflow_version, as_sent
):
    from airflow_provider_constantcontact import _compat

    if airflow_version:
        monkeypatch.setattr(_compat, "_airflow_version", lambda: airflow_version)
    default_conn_sandbox.processing_rate = 0.1
    ids = start_imports(default_conn_sandbox, contacts_each=5)

    def context_first_rescheduled(seconds_ago: float) -> dict:
        first = as_sent(datetime.now(timezone.utc) - timedelta(seconds=seconds_ago))
        return {"ti": SimpleNamespace(get_first_reschedule_date=lambda context: first)}

    task = sensor(ids, mode="reschedule", deferrable=False, poke_interval=5, timeout=60)
    # First rescheduled 10 s ago: within the timeout, so it reschedules ...
    with pytest.raises(AirflowRescheduleException):
        task.execute(context_first_rescheduled(10))
    # ... 10 minutes ago: the run lasts longer than the timeout.
    with pytest.raises(AirflowSensorTimeout, match=r"run duration of 6\d\d\.\d+ seconds exceeds"):
        task.execute(context_first_rescheduled(600))


# ----------------------------------------------------------------------------- deferrable mode
def test_deferrable_mode_defers_to_the_import_trigger(default_conn_sandbox):
    default_conn_sandbox.processing_rate = 0.5
    ids = start_imports(default_conn_sandbox, count=2, contacts_each=2)
    task = sensor(
        ids, deferrable=True, poke_interval=15, timeout=600, max_error_ratio=0.2, max_poll_interval=90
    )

    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute({})

    trigger = deferred.value.trigger
    assert isinstance(trigger, ConstantContactImportTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["activity_ids"] == ids
    assert kwargs["constantcontact_conn_id"] == CONN_ID
    assert kwargs["poll_interval"] == 15
    assert kwargs["max_error_ratio"] == 0.2
    assert kwargs["max_poll_interval"] == 90
    assert before + 600 <= kwargs["end_time"] <= time.time() + 600
    assert deferred.value.timeout >= timedelta(seconds=600)


def test_deferrable_mode_does_not_defer_for_a_finished_import(default_conn_sandbox):
    ids = start_imports(default_conn_sandbox)
    wait_done(default_conn_sandbox, ids)
    summary = sensor(ids, deferrable=True).execute({})
    assert summary["done"] is True


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
def test_deferrable_mode_defers_after_a_transient_error_on_its_first_check(default_conn_sandbox, fault):
    ids = start_imports(default_conn_sandbox)
    wait_done(default_conn_sandbox, ids)  # finished: only the failed first check makes it defer
    task = sensor(ids, deferrable=True)
    task.hook = quick_hook()
    inject(default_conn_sandbox, fault)

    with pytest.raises(TaskDeferred) as deferred:
        task.execute({})

    assert deferred.value.trigger.serialize()[1]["activity_ids"] == ids


@pytest.mark.parametrize("state", FAILED_STATES)
def test_deferrable_mode_fails_at_once_for_a_failed_import(default_conn_sandbox, state):
    default_conn_sandbox.fail_next_activity(errors=["Quota of queued activities reached"], state=state)
    ids = start_imports(default_conn_sandbox)
    wait_finished = time.monotonic() + 30
    while default_conn_sandbox.get_activity(ids[0])["state"] not in (state, "completed"):
        assert time.monotonic() < wait_finished
        time.sleep(0.05)
    with pytest.raises(ConstantContactImportError) as failure:
        sensor(ids, deferrable=True).execute({})  # the first check fails: no deferral
    assert f"activity {ids[0]} ended {state}: Quota of queued activities reached" in str(failure.value)


def test_execute_complete_handles_each_event():
    task = sensor(["a"], deferrable=True)
    summary = {"activities": {"a": {"state": "completed"}}, "totals": {}, "done": True, "percent_done": 100.0}
    summary["totals"] = dict.fromkeys(
        [
            "items_total_count",
            "items_completed_count",
            "person_count",
            "error_count",
            "correctable_count",
            "cannot_add_to_list_count",
        ],
        0,
    )

    assert task.execute_complete({}, {"status": "success", "summary": summary}) == summary
    with pytest.raises(ConstantContactImportError, match="activity a ended failed: broken"):
        task.execute_complete(
            {}, {"status": "error", "message": "activity a ended failed: broken", "summary": None}
        )
    with pytest.raises(AirflowSensorTimeout, match="Timed out waiting"):
        task.execute_complete(
            {}, {"status": "timeout", "message": "Timed out waiting for a", "summary": None}
        )
    with pytest.raises(ConstantContactImportError, match="Unexpected"):
        task.execute_complete({}, {"status": "weird"})


def test_activity_ids_and_threshold_are_templated():
    assert set(ConstantContactImportSensor.template_fields) == {"activity_ids", "max_error_ratio"}


def test_invalid_threshold_is_refused_when_used(default_conn_sandbox):
    ids = start_imports(default_conn_sandbox)
    with pytest.raises(ValueError, match="between 0 and 1"):
        sensor(ids, deferrable=False, max_error_ratio=1.5).execute({})
