"""Benchmark mirror mode: a segment of 1,000,000 rows into a list of 1,000,000 members.

    python benchmarks/mirror_benchmark.py                    # rate limit off
    python benchmarks/mirror_benchmark.py --rate-limit 4     # sandbox and hook at 4 requests/s

The sandbox starts as a sub-process (as in ``export_benchmark.py``) with its list pre-filled
with ``member0@example.com`` ... ``member{N-1}@example.com`` (``--fill-list``). The segment holds
``member{N/10}`` ... ``member{N + N/10 - 1}``, with stray case and spaces: 10% of the members
left the segment and 10% of the segment is new. The export runs in this process with
``sync_mode="mirror"``, ``max_removal_ratio=0.2`` and ``wait_for_completion=False`` (the
sandbox answers a request once validated and applies it in the background). It prints wall
time, CPU time, peak RSS (VmHWM) and the HTTP requests by kind; with ``--rate-limit`` also the
floor (requests / rate) and the ratio to it. Afterwards it checks that the list holds exactly the
segment.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from export_benchmark import (
    LIST_NAME,
    ROW_GROUP_ROWS,
    _FakeTI,
    cpu_seconds,
    make_hook,
    peak_rss_mb,
    reset_peak_rss,
    sandbox_process,
)


def generate_segment(path: Path, rows: int) -> None:
    """``member{rows/10 + i}@example.com`` for i < rows, with stray case and spaces every 7th row."""
    schema = pa.schema([("Email", pa.string()), ("FirstName", pa.string())])
    offset = rows // 10
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, ROW_GROUP_ROWS):
            ids = pa.array(range(offset + start, offset + min(start + ROW_GROUP_ROWS, rows)), pa.int64())
            email = pc.binary_join_element_wise("member", pc.cast(ids, pa.string()), "@example.com", "")
            odd = pc.equal(pc.bit_wise_and(ids, 7), 0)
            email = pc.if_else(odd, pc.binary_join_element_wise(" ", pc.utf8_upper(email), " ", ""), email)
            first = pc.binary_join_element_wise("First", pc.cast(ids, pa.string()), "")
            writer.write_table(pa.table({"Email": email, "FirstName": first}, schema=schema))


class RequestsByKind:
    """Counts responses of a ``requests.Session`` by method and kind of path."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> None:
        request = response.request
        path = request.path_url.split("?")[0]
        if "/oauth2/" in path:
            kind = "token"
        elif path.endswith("/contacts"):
            kind = "contacts listing (GET)"
        elif path.endswith("/contacts_json_import"):
            kind = "import (POST)"
        elif path.endswith("/remove_list_memberships"):
            kind = "removal (POST)"
        else:
            kind = f"other ({request.method} {path.rsplit('/', 1)[-1]})"
        self.counts[kind] += 1


def run(args: argparse.Namespace) -> dict[str, Any]:
    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )

    workdir = Path(tempfile.mkdtemp(prefix="cc-mirror-bench-"))
    try:
        path = workdir / "segment.parquet"
        generate_segment(path, args.rows)
        with sandbox_process(args.rate_limit, "--fill-list", f"{LIST_NAME}={args.members}") as info:
            operator = ConstantContactSegmentExportOperator(
                task_id="mirror_benchmark",
                source=str(path),
                list_ids=info["list_id"],
                field_mapping={"email": "Email", "first_name": "FirstName"},
                sync_mode="mirror",
                max_removal_ratio=0.2,
                wait_for_completion=False,
            )
            hook = operator.hook = make_hook(info)
            counter = RequestsByKind()
            hook.get_conn().hooks["response"].append(counter)
            reset_peak_rss()
            cpu = cpu_seconds()
            started = time.perf_counter()
            summary = operator.execute({"ti": _FakeTI()})
            wall = time.perf_counter() - started
            result = {
                "rows": args.rows,
                "members": args.members,
                "rate_limit": args.rate_limit,
                "wall_s": wall,
                "cpu_s": cpu_seconds() - cpu,
                "peak_rss_mb": peak_rss_mb(),
                "requests": dict(counter.counts),
                "contacts_submitted": summary["contacts_submitted"],
                "removed": sum(summary["removed"].values()),
                "members_before": sum(summary["members_before"].values()),
                "listing_requests": summary["listing_requests"],
            }
            api = sum(n for kind, n in counter.counts.items() if kind != "token")
            result["api_requests"] = api
            if args.rate_limit > 0:
                result["floor_s"] = api / args.rate_limit
                result["ratio_to_floor"] = wall / result["floor_s"]
            if not args.skip_check:
                # Reading the list back goes through the sandbox, paced like everything else.
                members = sum(len(page) for page in hook.iter_contact_pages(info["list_id"]))
                result["members_after"] = members
                result["list_equals_segment"] = members == args.rows
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def print_result(result: dict[str, Any]) -> None:
    rate = result["rate_limit"] or "off"
    print(f"segment rows: {result['rows']:,}  list members: {result['members']:,}  rate limit: {rate}")
    print(
        f"mirror: {result['wall_s']:.1f}s wall, {result['cpu_s']:.1f}s CPU, peak RSS "
        f"{result['peak_rss_mb']:.0f} MB; submitted {result['contacts_submitted']:,}, removed "
        f"{result['removed']:,} of {result['members_before']:,} members"
    )
    print(f"requests: {result['api_requests']} API ({json.dumps(result['requests'])})")
    if "floor_s" in result:
        print(
            f"rate-limit floor: {result['floor_s']:.1f}s ({result['api_requests']} requests / "
            f"{result['rate_limit']} per s); ratio {result['ratio_to_floor']:.2f}x"
        )
    if "members_after" in result:
        print(
            f"list after the run: {result['members_after']:,} members; equals the segment: "
            f"{result['list_equals_segment']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="segment rows")
    parser.add_argument("--members", type=int, default=1_000_000, help="members the list starts with")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="sandbox and hook requests/s (0 = off)")
    parser.add_argument("--skip-check", action="store_true", help="do not read the list back afterwards")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    print(json.dumps(result) if args.json else "", end="\n" if args.json else "")
    if not args.json:
        print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
