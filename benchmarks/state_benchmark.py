"""Benchmark export state: a 1,000,000-member list mirrored daily, with and without ``state_path``.

    python benchmarks/state_benchmark.py                  # 1,000,000 rows, rate limit off
    python benchmarks/state_benchmark.py --rows 100000    # smaller

The sandbox starts as a sub-process with its list pre-filled with ``member0@example.com`` ...
(``--fill-list``); the segment holds the same contacts with first names. Five runs of the
operator, all ``sync_mode="mirror"``:

1. **today** (no state): reads the whole list, sends the whole segment;
2. **first run with state**: the same work, and the state is written (waits for completion);
3. **1% changed**: 0.5% of the contacts changed their first name, 0.5% left the segment, 0.5%
   are new, and 100 members left the list by themselves (the sandbox's leave call);
4. **quiet day**: the same segment again;
5. **full refresh** (the weekly reconciliation): ``full_refresh=True``, the list read in full
   and every contact of the segment sent again (still not those who left the list).

Each run is a fresh Python process, as each Airflow task try is: its peak RSS (VmHWM, reset
once the modules are imported) is that run's alone, not what earlier runs left in the heap.
It prints, per run, wall and CPU time, peak RSS, the API requests by kind and the contacts
sent, checks that the leavers were not re-added, and the daily request count of mirroring five
such lists with state (quiet or 1% days, one full refresh a week) against the 10,000-a-day quota.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import requests
from export_benchmark import (
    ROW_GROUP_ROWS,
    _FakeTI,
    cpu_seconds,
    make_hook,
    peak_rss_mb,
    reset_peak_rss,
    sandbox_process,
)
from mirror_benchmark import RequestsByKind

DAILY_QUOTA = 10_000
LEAVERS = 100


def write_segment(path: Path, ids: pa.Array, renamed: pa.Array | None = None) -> None:
    """``member{i}@example.com`` with first name ``First{i}`` (``Renamed{i}`` for ``renamed`` ids)."""
    schema = pa.schema([("Email", pa.string()), ("FirstName", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(ids), ROW_GROUP_ROWS):
            chunk = ids.slice(start, ROW_GROUP_ROWS)
            text = pc.cast(chunk, pa.string())
            email = pc.binary_join_element_wise("member", text, "@example.com", "")
            first = pc.binary_join_element_wise("First", text, "")
            if renamed is not None:
                first = pc.if_else(
                    pc.is_in(chunk, value_set=renamed),
                    pc.binary_join_element_wise("Renamed", text, ""),
                    first,
                )
            writer.write_table(pa.table({"Email": email, "FirstName": first}, schema=schema))


def export_once(
    info: dict[str, Any], source: Path, state_path: Path | None, *, full_refresh: bool = False
) -> dict[str, Any]:
    """:func:`export_in_this_process` in a fresh Python process; its figures."""
    job = {
        "info": info,
        "source": str(source),
        "state_path": None if state_path is None else str(state_path),
        "full_refresh": full_refresh,
    }
    done = subprocess.run(
        [sys.executable, __file__, "--one-run", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the export run failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def export_in_this_process(
    info: dict[str, Any], source: Path, state_path: Path | None, *, full_refresh: bool = False
) -> dict[str, Any]:
    """One mirror export through the operator; wall, CPU, peak RSS, requests, the summary."""
    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )

    operator = ConstantContactSegmentExportOperator(
        task_id="state_benchmark",
        source=str(source),
        list_ids=info["list_id"],
        field_mapping={"email": "Email", "first_name": "FirstName"},
        sync_mode="mirror",
        max_removal_ratio=0.2,
        state_path=None if state_path is None else str(state_path),
        full_refresh=full_refresh,
        wait_for_completion=state_path is not None,  # the state is written once confirmed
        poll_interval=1.0,
        timeout=3600,
    )
    hook = operator.hook = make_hook(info)
    counter = RequestsByKind()
    hook.get_conn().hooks["response"].append(counter)
    reset_peak_rss()
    rss_start = peak_rss_mb()  # VmHWM just reset: the RSS the run starts from
    cpu = cpu_seconds()
    started = time.perf_counter()
    summary = operator.execute({"ti": _FakeTI()})
    wall = time.perf_counter() - started
    polls = counter.counts.get("other (GET activities)", 0)  # the wait: one poll for all activities
    api = sum(n for kind, n in counter.counts.items() if kind != "token")
    return {
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu,
        "peak_rss_mb": peak_rss_mb(),
        "rss_start_mb": rss_start,
        "requests": dict(counter.counts),
        "api_requests": api,
        "api_requests_without_wait": api - polls,
        "contacts_submitted": summary["contacts_submitted"],
        "import_requests": summary["batches"],
        "removed": sum(summary.get("removed", {}).values()),
        "changes_read": summary.get("changes_read"),
        "contacts_unchanged": summary.get("contacts_unchanged"),
        "left_list_outside_export": summary.get("left_list_outside_export"),
    }


def next_day(control: str) -> None:
    """Move the sandbox clock a day on: the runs are daily (changes are re-read an hour back)."""
    requests.post(f"{control}/sandbox/clock", json={"advance_seconds": 86_400}, timeout=60).raise_for_status()


def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = args.rows
    workdir = Path(tempfile.mkdtemp(prefix="cc-state-bench-"))
    try:
        segment = workdir / "segment" / "part.parquet"
        segment.parent.mkdir()
        state_path = workdir / "state" / "list.parquet"
        everyone = pa.array(range(rows), pa.int64())
        write_segment(segment, everyone)
        result: dict[str, Any] = {"rows": rows}
        with sandbox_process(0, "--fill-list", f"Benchmark={rows}") as info:
            control = info["connection"]["extra"]["api_base_url"].rsplit("/v3", 1)[0]
            next_day(control)
            result["today"] = export_once(info, segment, None)
            next_day(control)
            result["first_with_state"] = export_once(info, segment, state_path)
            next_day(control)
            # 1%: 0.5% renamed, 0.5% out of the segment, 0.5% new; 100 members leave the list.
            step = 200
            renamed = pa.array(range(0, rows, step), pa.int64())
            gone = pa.array(range(1, rows, step), pa.int64())
            new = pa.array(range(rows, rows + rows // step), pa.int64())
            kept = everyone.filter(pc.invert(pc.is_in(everyone, value_set=gone)))
            write_segment(segment, pa.concat_arrays([kept, new]), renamed)
            leavers = [f"member{i}@example.com" for i in range(2, 2 + LEAVERS * step, step)]
            response = requests.post(
                f"{control}/sandbox/lists/{info['list_id']}/leave", json={"emails": leavers}, timeout=60
            )
            response.raise_for_status()
            result["one_percent"] = export_once(info, segment, state_path)
            next_day(control)
            result["quiet_day"] = export_once(info, segment, state_path)
            next_day(control)
            result["full_refresh"] = export_once(info, segment, state_path, full_refresh=True)
            result["state_bytes"] = state_path.stat().st_size
            hook = make_hook(info)
            members = set()
            for page in hook.iter_contact_pages(info["list_id"]):
                members.update(contact["email_address"]["address"] for contact in page)
            result["leavers_readded"] = sum(1 for email in leavers if email in members)
            result["members_after"] = len(members)
            result["expected_members"] = len(kept) + len(new) - LEAVERS
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def daily_plan(result: dict[str, Any], lists: int = 5) -> dict[str, float]:
    """Requests a day of mirroring ``lists`` such lists daily: with state (1% days, a weekly full
    refresh costing what a run without state costs) and without."""
    ordinary = result["one_percent"]["api_requests_without_wait"]
    full = result["today"]["api_requests"]
    with_state = lists * (6 * ordinary + full) / 7
    return {"with_state": with_state, "without_state": lists * full}


def print_result(result: dict[str, Any]) -> None:
    print(f"segment and list: {result['rows']:,} contacts, mirror mode, sandbox rate limit off")
    for name in ("today", "first_with_state", "one_percent", "quiet_day", "full_refresh"):
        run_ = result[name]
        print(
            f"{name:>17}: {run_['wall_s']:6.1f}s wall, {run_['cpu_s']:6.1f}s CPU, peak RSS "
            f"{run_['peak_rss_mb']:4.0f} MB (from {run_['rss_start_mb']:.0f}); "
            f"sent {run_['contacts_submitted']:,} in "
            f"{run_['import_requests']} import request(s), removed {run_['removed']:,}; "
            f"{run_['api_requests']} API requests ({run_['api_requests_without_wait']} without the "
            f"wait's polls); changes read {run_['changes_read']}"
        )
        print(f"{'':>19}{json.dumps(run_['requests'])}")
    print(f"state file: {result['state_bytes'] / 1e6:.1f} MB")
    print(
        f"leavers re-added: {result['leavers_readded']} of {LEAVERS}; list after: "
        f"{result['members_after']:,} members (expected {result['expected_members']:,})"
    )
    plan = daily_plan(result)
    print(
        f"five such lists mirrored daily: {plan['with_state']:,.0f} requests a day with state "
        f"(1% days, weekly full refresh), {plan['without_state']:,.0f} without; quota {DAILY_QUOTA:,}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="segment rows and list members")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument("--one-run", help=argparse.SUPPRESS)  # internal: one export, JSON job
    args = parser.parse_args(argv)
    if args.one_run:
        job = json.loads(args.one_run)
        state_path = None if job["state_path"] is None else Path(job["state_path"])
        run_ = export_in_this_process(
            job["info"], Path(job["source"]), state_path, full_refresh=job["full_refresh"]
        )
        print(json.dumps(run_))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
