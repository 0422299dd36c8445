"""Mirror mode and lists by name, against the sandbox over real HTTP."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from airflow_provider_constantcontact.exceptions import (
    ConstantContactExportError,
    ConstantContactNotFoundError,
    ConstantContactServerError,
    ConstantContactValidationError,
)
from tests.operators.conftest import imports_in_log, run, write_parquet

REMOVE_PATH = "/v3/activities/remove_list_memberships"
MAPPING = {"email": "Email", "phone": "Phone"}


def removals_in_log(sandbox) -> list:
    return [e for e in sandbox.request_log if e.method == "POST" and e.path == REMOVE_PATH]


def changes_in_log(sandbox) -> list:
    """Every request that could change the account (anything but GET and token refreshes)."""
    return [e for e in sandbox.request_log if e.method != "GET" and e.path.startswith("/v3/")]


def _segment(tmp_path: Path, rows: list[tuple[str | None, str | None, str]]) -> Path:
    emails, phones, segments = zip(*rows, strict=True) if rows else ((), (), ())
    return write_parquet(
        tmp_path / "segment.parquet",
        {"Email": list(emails), "Phone": list(phones), "Segment": list(segments)},
    )


@pytest.fixture
def vip_list(constantcontact_sandbox) -> str:
    """A list of 10 members: stay1..stay6 (in the segment, some spelled differently there),
    left1..left3 (left the segment), hand@example.com (added by hand)."""
    list_id = constantcontact_sandbox.create_list("VIP customers")
    members = [f"stay{i}@example.com" for i in range(1, 7)]
    members += [f"left{i}@example.com" for i in range(1, 4)] + ["hand@example.com"]
    constantcontact_sandbox.add_list_members(list_id, members)
    return list_id


def _vip_rows() -> list[tuple[str | None, str | None, str]]:
    return [
        ("stay1@example.com", None, "vip"),
        ("  STAY2@Example.com ", None, "vip"),  # spelled differently: same contact
        ("stay3@example.com", "9" * 60, "vip"),  # rejected for its phone: still in the segment
        ("stay4@example.com", None, "vip"),
        ("stay5@example.com", None, "vip"),
        ("stay6@example.com", None, "vip"),
        ("new1@example.com", None, "vip"),
        ("left1@example.com", None, "lapsed"),  # only in a filtered-out segment: leaves
        (None, None, "vip"),
    ]


def test_mirror_makes_the_list_equal_to_the_segment(
    make_export, constantcontact_sandbox, vip_list, tmp_path
) -> None:
    source = _segment(tmp_path, _vip_rows())
    summary, ti = run(
        make_export(
            source=str(source),
            list_ids=[vip_list],
            field_mapping=MAPPING,
            segment_column="Segment",
            segments=["vip"],
            sync_mode="mirror",
            max_removal_ratio=0.5,
            removals_path=str(tmp_path / "out" / "removed.parquet"),
            wait_for_completion=True,
        )
    )
    expected = {f"stay{i}@example.com" for i in range(1, 7)} | {"new1@example.com"}
    assert constantcontact_sandbox.list_member_emails(vip_list) == expected
    assert summary["removed"] == {vip_list: 4}  # left1..3 and the hand-added member
    assert summary["members_before"] == {vip_list: 10}
    assert summary["listing_requests"] == 1
    assert summary["contacts_submitted"] == 6  # stay3 was rejected for its phone, not removed
    assert summary["rejected"] == {"missing_email": 1, "phone_too_long": 1}
    assert len(summary["removal_activity_ids"]) == 1
    assert set(summary["removal_activity_ids"]) <= set(summary["activity_ids"])
    assert ti.xcom["activity_ids"] == summary["activity_ids"]
    assert summary["activity_states"] == dict.fromkeys(summary["activity_ids"], "completed")
    removed = pq.read_table(tmp_path / "out" / "removed.parquet").to_pydict()
    assert sorted(removed["email"]) == [
        "hand@example.com",
        "left1@example.com",
        "left2@example.com",
        "left3@example.com",
    ]
    assert set(removed["list_id"]) == {vip_list}
    assert all(removed["contact_id"])
    assert summary["removals_written"] == 4
    # Removal never deletes a contact: the ones removed from the list still exist.
    assert constantcontact_sandbox.contact_id("left1@example.com")


def test_guard_refuses_and_changes_nothing_on_any_list(
    make_export, constantcontact_sandbox, vip_list, newsletter, tmp_path
) -> None:
    constantcontact_sandbox.add_list_members(newsletter, ["stay1@example.com"])
    before = {lid: constantcontact_sandbox.list_member_emails(lid) for lid in (vip_list, newsletter)}
    source = _segment(tmp_path, _vip_rows())
    constantcontact_sandbox.clear_request_log()
    with pytest.raises(ConstantContactExportError) as err:
        run(
            make_export(
                source=str(source),
                list_ids=[newsletter, vip_list],
                field_mapping=MAPPING,
                segment_column="Segment",
                segments=["vip"],
                sync_mode="mirror",
                # the default 0.1: VIP customers would lose 4 of 10 members
            )
        )
    message = str(err.value)
    assert vip_list in message
    assert "4 of its 10 members" in message
    assert "max_removal_ratio=0.1" in message
    assert "Nothing was imported or removed for any list" in message
    assert changes_in_log(constantcontact_sandbox) == []
    assert {lid: constantcontact_sandbox.list_member_emails(lid) for lid in before} == before


@pytest.mark.parametrize("ratio", [0.1, 1.0])
def test_an_empty_segment_never_empties_a_list(
    make_export, constantcontact_sandbox, vip_list, tmp_path, ratio
) -> None:
    source = _segment(tmp_path, [("not-an-email", None, "vip"), (None, None, "vip")])
    constantcontact_sandbox.clear_request_log()
    with pytest.raises(ConstantContactExportError, match="no valid contact.*never removes anyone"):
        run(
            make_export(
                source=str(source),
                list_ids=[vip_list],
                field_mapping=MAPPING,
                sync_mode="mirror",
                max_removal_ratio=ratio,
            )
        )
    assert changes_in_log(constantcontact_sandbox) == []
    assert len(constantcontact_sandbox.list_member_emails(vip_list)) == 10


def test_plan_only_reads_members_and_reports_without_changing_anything(
    make_export, constantcontact_sandbox, vip_list, tmp_path
) -> None:
    source = _segment(tmp_path, _vip_rows())
    constantcontact_sandbox.clear_request_log()
    summary, _ = run(
        make_export(
            source=str(source),
            list_ids=[vip_list],
            field_mapping=MAPPING,
            segment_column="Segment",
            segments=["vip"],
            sync_mode="mirror",
            max_removal_ratio=0.5,
            plan_only=True,
            removals_path=str(tmp_path / "would_remove.parquet"),
        )
    )
    assert summary["plan_only"] is True
    assert summary["removed"] == {vip_list: 4}
    assert summary["members_before"] == {vip_list: 10}
    assert summary["contacts_submitted"] == 6
    assert summary["activity_ids"] == []
    assert summary["removal_activity_ids"] == []
    assert {e.method for e in constantcontact_sandbox.request_log if e.path.startswith("/v3/")} == {"GET"}
    assert len(constantcontact_sandbox.list_member_emails(vip_list)) == 10
    assert pq.read_table(tmp_path / "would_remove.parquet").num_rows == 4


def test_two_lists_mirrored_in_one_task_with_paged_listing(
    make_export, constantcontact_sandbox, tmp_path
) -> None:
    big = constantcontact_sandbox.create_list("Big")
    small = constantcontact_sandbox.create_list("Small")
    members = [f"m{i}@example.com" for i in range(1200)]
    constantcontact_sandbox.add_list_members(big, members)
    constantcontact_sandbox.add_list_members(small, members[:3] + ["gone@example.com"])
    keep = members[:1100]  # 100 of the big list's members leave
    source = write_parquet(tmp_path / "s.parquet", {"Email": keep})
    summary, _ = run(
        make_export(
            source=str(source),
            list_ids=[big, small],
            field_mapping={"email": "Email"},
            sync_mode="mirror",
            max_removal_ratio=0.3,
            wait_for_completion=True,
        )
    )
    assert constantcontact_sandbox.list_member_emails(big) == set(keep)
    assert constantcontact_sandbox.list_member_emails(small) == set(keep)
    assert summary["removed"] == {big: 100, small: 1}
    assert summary["members_before"] == {big: 1200, small: 4}
    assert summary["listing_requests"] == math.ceil(1200 / 500) + 1
    assert len(removals_in_log(constantcontact_sandbox)) == 2


def test_removals_are_sent_500_contact_ids_a_request(make_export, constantcontact_sandbox, tmp_path) -> None:
    target = constantcontact_sandbox.create_list("Churn")
    members = [f"c{i}@example.com" for i in range(1300)]
    constantcontact_sandbox.add_list_members(target, members)
    source = write_parquet(tmp_path / "s.parquet", {"Email": members[:100]})
    summary, _ = run(
        make_export(
            source=str(source),
            list_ids=[target],
            field_mapping={"email": "Email"},
            sync_mode="mirror",
            max_removal_ratio=1.0,
            wait_for_completion=True,
        )
    )
    assert summary["removed"] == {target: 1200}
    assert len(summary["removal_activity_ids"]) == 3  # 500 + 500 + 200
    assert constantcontact_sandbox.list_member_emails(target) == set(members[:100])


def test_a_removal_failing_midway_is_safe_to_rerun(make_export, constantcontact_sandbox, tmp_path) -> None:
    target = constantcontact_sandbox.create_list("Flaky")
    members = [f"f{i}@example.com" for i in range(1500)]
    constantcontact_sandbox.add_list_members(target, members)
    source = write_parquet(tmp_path / "s.parquet", {"Email": members[:300] + ["new@example.com"]})
    options = {
        "source": str(source),
        "list_ids": [target],
        "field_mapping": {"email": "Email"},
        "sync_mode": "mirror",
        "max_removal_ratio": 1.0,
        "wait_for_completion": True,
    }
    # The second removal request fails past the hook's retry budget (6 attempts).
    constantcontact_sandbox.fail_next(6, status=500, path_prefix=REMOVE_PATH, after=1)
    with pytest.raises(ConstantContactServerError):
        run(make_export(**options))
    partly = constantcontact_sandbox.list_member_emails(target)
    assert set(members[:300]) | {"new@example.com"} <= partly  # nothing in the segment was removed
    assert len(partly) > 301

    summary, _ = run(make_export(**options))
    assert constantcontact_sandbox.list_member_emails(target) == set(members[:300]) | {"new@example.com"}
    assert summary["removed"] == {target: len(partly) - 301}


def test_lists_by_name_resolved_and_created(make_export, constantcontact_sandbox, vip_list, tmp_path) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com", "b@example.com"]})
    options = {
        "source": str(source),
        "list_ids": None,
        "list_names": ["VIP customers", "Brand new list"],
        "field_mapping": {"email": "Email"},
    }
    with pytest.raises(ConstantContactNotFoundError, match="'Brand new list'.*create_missing_lists=True"):
        run(make_export(**options))
    assert imports_in_log(constantcontact_sandbox) == []

    dry, _ = run(make_export(**options, create_missing_lists=True, plan_only=True))
    assert dry["lists_to_create"] == ["Brand new list"]
    assert dry["list_ids"] == [vip_list]
    assert "Brand new list" not in constantcontact_sandbox.list_ids

    summary, _ = run(make_export(**options, create_missing_lists=True, wait_for_completion=True))
    created = constantcontact_sandbox.list_ids["Brand new list"]
    assert summary["list_ids"] == [vip_list, created]
    assert summary["lists_created"] == ["Brand new list"]
    for list_id in (vip_list, created):
        assert {"a@example.com", "b@example.com"} <= constantcontact_sandbox.list_member_emails(list_id)

    # The next run finds the list it created: nothing is created twice.
    again, _ = run(make_export(**options, create_missing_lists=True))
    assert again["list_ids"] == [vip_list, created]
    assert "lists_created" not in again


def test_list_names_matched_exactly(make_export, constantcontact_sandbox, vip_list, tmp_path) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    with pytest.raises(ConstantContactNotFoundError, match="reads as 'vip customers', but 'VIP customers'"):
        run(
            make_export(
                source=str(source),
                list_ids=None,
                list_names="vip customers",
                field_mapping={"email": "Email"},
            )
        )
    assert imports_in_log(constantcontact_sandbox) == []


def test_duplicate_list_names_in_the_account_fail_clearly(
    make_export, constantcontact_sandbox, vip_list, tmp_path, monkeypatch
) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    operator = make_export(
        source=str(source), list_ids=None, list_names=["VIP customers"], field_mapping={"email": "Email"}
    )
    # The API forbids two lists with one name; the export must not guess if it ever sees them.
    listed = operator.hook.iter_contact_lists

    def twice(**kwargs):
        for item in listed(**kwargs):
            yield item
            if item.get("name") == "VIP customers":
                yield {**item, "list_id": "00000000-0000-4000-8000-000000000001"}

    monkeypatch.setattr(operator.hook, "iter_contact_lists", twice)
    with pytest.raises(ConstantContactValidationError, match="2 contact lists read as 'VIP customers'"):
        run(operator)
    assert imports_in_log(constantcontact_sandbox) == []


def test_upsert_stays_the_default_and_removes_nothing(
    make_export, constantcontact_sandbox, vip_list, tmp_path
) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["new@example.com"]})
    summary, _ = run(make_export(source=str(source), list_ids=[vip_list], field_mapping={"email": "Email"}))
    assert "removed" not in summary
    assert removals_in_log(constantcontact_sandbox) == []
    assert len(constantcontact_sandbox.list_member_emails(vip_list)) == 11


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sync_mode": "replace"}, "sync_mode must be one of upsert, mirror"),
        ({"sync_mode": "mirror", "max_removal_ratio": 1.5}, "max_removal_ratio must be between 0 and 1"),
        ({"removals_path": "/tmp/x.parquet"}, "removals_path needs sync_mode='mirror'"),
    ],
)
def test_mirror_parameters_are_checked(make_export, tmp_path, options, message) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    with pytest.raises(ValueError, match=message):
        run(make_export(source=str(source), field_mapping={"email": "Email"}, **options))
