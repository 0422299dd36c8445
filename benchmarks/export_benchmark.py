"""Benchmark the segment export against the sandbox, and a naive reference implementation.

    python benchmarks/export_benchmark.py                      # 1,000,000 rows, rate limit off
    python benchmarks/export_benchmark.py --rate-limit 4       # sandbox and hook at 4 requests/s
    python benchmarks/export_benchmark.py --sizes 1000000 5000000 --skip-naive   # memory growth

It generates a segment (email, first name, last name, one custom field; 2.5% invalid or missing
emails, ~1.4% duplicates) as Parquet and starts the sandbox as a sub-process the way a user would
(``python -m airflow_provider_constantcontact.sandbox``; its CPU and memory stay out of the
measurement). Then, in this process, it runs the operator's export with ``plan_only=True``
(the "dry run": everything but the POSTs, the export's own cost), the real export (``plan_only=False``,
``wait_for_completion=False``: like the real service, the sandbox answers an import once the
body is validated and applies it in the background, so the wall time covers reading,
validating, encoding and submitting; it also reports when the sandbox had applied everything),
and, against a fresh sandbox, the naive reference (whole table to Python dicts, per-row regex,
``json.dumps``, one POST per 40,000 rows; with ``--rate-limit`` its POSTs are spaced to that
rate, as it would otherwise be answered 429 and fail). It prints wall time, CPU time,
contacts/s, peak RSS (VmHWM, reset between the runs) and HTTP requests for each. ``--sizes``
runs each size in a fresh process and prints the peak-RSS growth between them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FIELD_MAPPING = {
    "email": "EmailAddress",
    "first_name": "FirstName",
    "last_name": "LastName",
    "cf:loyalty_tier": "Tier",
}
LIST_NAME = "Benchmark"
CUSTOM_FIELD = "loyalty_tier"
ROW_GROUP_ROWS = 128 * 1024


# ------------------------------------------------------------------------------------ data
def generate_segment(path: Path, rows: int, *, invalid_every: int = 40, duplicate_every: int = 33) -> None:
    """Write ``rows`` profiles: 2.5% invalid or missing emails, ~1.4% duplicates of earlier rows.

    Emails get stray case and whitespace (the export normalises them); duplicates repeat an
    earlier row's email in another case. Every ``duplicate_every``-th row is meant as one (~3%),
    but about half of them copy a row that is itself such a row, or that is invalid, and so hold
    an email seen nowhere else: ~1.4% of the rows are real duplicates (14,016 in 1,000,000).
    """
    with pq.ParquetWriter(path, _schema()) as writer:
        for start in range(0, rows, ROW_GROUP_ROWS):
            writer.write_table(
                _chunk(start, min(ROW_GROUP_ROWS, rows - start), invalid_every, duplicate_every)
            )


def _schema() -> pa.Schema:
    return pa.schema(
        [(name, pa.string()) for name in ("EmailAddress", "FirstName", "LastName", "Tier", "Segment")]
    )


def _mod(values: pa.Array, divisor: int) -> pa.Array:
    return pc.subtract(values, pc.multiply(pc.divide(values, divisor), divisor))


def _chunk(start: int, length: int, invalid_every: int, duplicate_every: int) -> pa.Table:
    ids = pa.array(range(start, start + length), pa.int64())
    text = pc.cast(ids, pa.string())
    # A duplicate repeats the email of row id // 2 (always earlier), upper-cased.
    is_duplicate = pc.and_(pc.equal(_mod(ids, duplicate_every), 0), pc.greater(ids, 0))
    source = pc.if_else(is_duplicate, pc.divide(ids, 2), ids)
    domain = pc.cast(pc.bit_wise_and(source, 63), pa.string())
    email = pc.binary_join_element_wise(
        " User.", pc.cast(source, pa.string()), "@Example", domain, ".com ", ""
    )
    email = pc.if_else(is_duplicate, pc.utf8_upper(email), email)
    kind = pc.bit_wise_and(ids, 3)
    is_invalid = pc.equal(_mod(ids, invalid_every), 7)
    # Alternate the two kinds of bad email: missing (null) and malformed.
    missing = pc.equal(pc.bit_wise_and(pc.divide(ids, invalid_every), 1), 0)
    bad = pc.if_else(missing, pa.scalar(None, pa.string()), pa.scalar("not-an-email", pa.string()))
    email = pc.if_else(is_invalid, bad, email)
    first = pc.binary_join_element_wise("Firstname", text, "")
    first = pc.if_else(pc.equal(pc.bit_wise_and(ids, 15), 5), pa.scalar(None, pa.string()), first)
    last = pc.binary_join_element_wise("Lastname-", text, "")
    tiers = pa.array(["gold", "silver", "bronze", None], pa.string())
    tier = tiers.take(kind)
    segment = pa.array(["A", "B", "C"], pa.string()).take(pc.bit_wise_and(ids, 1))
    return pa.Table.from_arrays([email, first, last, tier, segment], schema=_schema())


# --------------------------------------------------------------------------------- sandbox
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def sandbox_process(rate_limit: float, *extra_args: str) -> Iterator[dict[str, Any]]:
    """Start the sandbox CLI as a sub-process; yield its URLs, credentials and list id.

    ``extra_args`` go to the CLI as they are (e.g. ``--fill-list NAME=COUNT``).
    """
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "airflow_provider_constantcontact.sandbox",
        "--port",
        str(port),
        "--rate-limit",
        str(rate_limit),
        "--token-rate-limit",
        "0",
        "--daily-quota",
        "0",
        "--list",
        LIST_NAME,
        "--custom-field",
        CUSTOM_FIELD,
        *extra_args,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info: dict[str, Any] = {}
        deadline = time.monotonic() + 300  # pre-filling a list of a million members takes a while
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("the sandbox exited before it was ready")
            if match := re.search(r"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT=(.*)$", line.strip()):
                raw = match.group(1)
                info["connection"] = json.loads(raw[1:-1] if raw.startswith("'") else raw)
            if match := re.search(rf"List id:\s+(\S+)\s+{LIST_NAME}(?: \(.*\))?$", line.strip()):
                info["list_id"] = match.group(1)
            if line.startswith("Press Ctrl-C"):
                break
        yield info
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_hook(info: dict[str, Any]) -> Any:
    from airflow.sdk import Connection

    from airflow_provider_constantcontact.hooks._token_store import MemoryTokenStore
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

    conn = info["connection"]
    connection = Connection(
        conn_id="benchmark",
        conn_type="constantcontact",
        login=conn["login"],
        password=conn["password"],
        extra=json.dumps(conn["extra"]),
    )
    return ConstantContactHook("benchmark", connection=connection, token_store=MemoryTokenStore())


class RequestCounter:
    """Counts HTTP responses of a ``requests.Session`` (API calls and token calls apart)."""

    def __init__(self) -> None:
        self.api = 0
        self.token = 0

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> None:
        if "/oauth2/" in response.url:
            self.token += 1
        else:
            self.api += 1

    def attach(self, session: Any) -> RequestCounter:
        session.hooks["response"].append(self)
        return self


# ------------------------------------------------------------------------------- measuring
def peak_rss_mb() -> float:
    """Peak resident set size of this process (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class _FakeTI:
    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def run_export(path: Path, info: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    """The operator's export; wall time from execute() start to the last accepted POST.

    Also measures how long the import POSTs took to be answered (the sandbox validating the
    bodies), when the sandbox had applied every import (reading the last activity applies
    whatever is still queued), and with ``dry_run`` everything but the POSTs: the export's own
    cost.
    """
    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )

    operator = ConstantContactSegmentExportOperator(
        task_id="benchmark_export",
        source=str(path),
        list_ids=info["list_id"],
        field_mapping=FIELD_MAPPING,
        wait_for_completion=False,
        plan_only=dry_run,
    )
    hook = operator.hook = make_hook(info)
    counter = RequestCounter().attach(hook.get_conn())
    post_seconds = []
    post = hook.import_contacts_body

    def timed_post(body: bytes) -> dict:
        started = time.perf_counter()
        try:
            return post(body)
        finally:
            post_seconds.append(time.perf_counter() - started)

    hook.import_contacts_body = timed_post
    ti = _FakeTI()
    started, cpu = time.perf_counter(), cpu_seconds()
    summary = operator.execute({"ti": ti})
    wall = time.perf_counter() - started
    api_requests = counter.api  # the export's own requests (not the status read below)
    applied = wall
    if not dry_run and ti.xcom.get("activity_ids"):
        last = hook.get_activity(ti.xcom["activity_ids"][-1])
        applied = time.perf_counter() - started
        if last["state"] not in ("completed", "processing"):
            raise RuntimeError(f"unexpected import state {last['state']}")
    return {
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu,
        "contacts": summary["contacts_submitted"],
        "api_requests": api_requests,
        "token_requests": counter.token,
        "import_requests": summary["batches"],
        "import_post_s": sum(post_seconds),
        "max_import_post_s": max(post_seconds, default=0.0),
        "applied_s": applied,
        "rows_read": summary["rows_read"],
        "duplicates": summary["duplicates"],
        "rejected": summary["rejected"],
    }


NAIVE_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")


def run_naive(path: Path, info: dict[str, Any], rate_limit: float = 0.0) -> dict[str, Any]:
    """The naive reference: the whole table as dicts, per-row regex, json.dumps, POST per 40,000.

    It has no retries, so with the sandbox's ``rate_limit`` on (requests/s) its POSTs are spaced
    ``1 / rate_limit`` seconds apart; without that the fifth one or so would get a 429 and fail.
    """
    import requests

    hook = make_hook(info)
    token = hook.tokens.access_token()
    session = requests.Session()
    counter = RequestCounter().attach(session)
    url = hook.api_base_url + "/activities/contacts_json_import"
    started, cpu = time.perf_counter(), cpu_seconds()
    rows = pq.read_table(path, columns=list(FIELD_MAPPING.values())).to_pylist()
    seen: set[str] = set()
    contacts = []
    for row in rows:
        email = (row["EmailAddress"] or "").strip().lower()
        if not NAIVE_EMAIL.match(email) or len(email) > 50 or email in seen:
            continue
        seen.add(email)
        contact = {"email": email}
        for field, column in FIELD_MAPPING.items():
            if field != "email" and row[column]:
                contact[field] = row[column].strip()
        contacts.append(contact)
    interval = 1.0 / rate_limit if rate_limit > 0 else 0.0
    next_post = 0.0
    for start in range(0, len(contacts), 40_000):
        body = json.dumps({"import_data": contacts[start : start + 40_000], "list_ids": [info["list_id"]]})
        if interval:
            time.sleep(max(0.0, next_post - time.perf_counter()))
            next_post = time.perf_counter() + interval
        response = session.post(
            url, data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        )
        response.raise_for_status()
    wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu,
        "contacts": len(contacts),
        "api_requests": counter.api,
    }


# ------------------------------------------------------------------------------------ main
def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="cc-export-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"segment-{args.rows}.parquet"
    try:
        if not path.exists():
            started = time.perf_counter()
            generate_segment(path, args.rows)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f}s: {path}", flush=True)
        result: dict[str, Any] = {
            "rows": args.rows,
            "rate_limit": args.rate_limit,
            "cpus": os.cpu_count(),
            "load_before": os.getloadavg()[0],
        }
        with sandbox_process(args.rate_limit) as info:
            if not args.skip_dry_run:
                reset_peak_rss()
                dry = run_export(path, info, dry_run=True)
                dry["peak_rss_mb"] = peak_rss_mb()
                dry["contacts_per_s"] = dry["contacts"] / dry["wall_s"]
                result["dry_run"] = dry
            reset_peak_rss()
            export = run_export(path, info)
            export["peak_rss_mb"] = peak_rss_mb()
            export["contacts_per_s"] = export["contacts"] / export["wall_s"]
            result["export"] = export
            if args.rate_limit > 0:
                floor = export["api_requests"] / args.rate_limit
                result["rate_limit_floor_s"] = floor
                result["ratio_to_floor"] = export["wall_s"] / floor
        if not args.skip_naive:
            # A fresh sandbox: both implementations create the same contacts from scratch.
            with sandbox_process(args.rate_limit) as info:
                reset_peak_rss()
                naive = run_naive(path, info, args.rate_limit)
            naive["peak_rss_mb"] = peak_rss_mb()
            naive["contacts_per_s"] = naive["contacts"] / naive["wall_s"]
            result["naive"] = naive
            result["speedup_vs_naive"] = naive["wall_s"] / export["wall_s"]
            result["cpu_ratio_vs_naive"] = naive["cpu_s"] / export["cpu_s"]
        return result
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def print_result(result: dict[str, Any]) -> None:
    export = result["export"]
    rate = result["rate_limit"] or "off"
    print(
        f"rows: {result['rows']:,}  sandbox rate limit: {rate}  cpus: {result['cpus']}  "
        f"load average before: {result['load_before']:.2f}"
    )
    if "dry_run" in result:
        dry = result["dry_run"]
        print(
            f"export, dry run (read, validate, de-duplicate, encode, cut bodies; no POST): "
            f"{dry['wall_s']:.2f}s, {dry['cpu_s']:.2f}s CPU ({dry['contacts_per_s']:,.0f} contacts/s), "
            f"peak RSS {dry['peak_rss_mb']:.0f} MB"
        )
    print(
        f"export: {export['wall_s']:.2f}s, {export['cpu_s']:.2f}s CPU, {export['contacts']:,} contacts "
        f"({export['contacts_per_s']:,.0f}/s), peak RSS {export['peak_rss_mb']:.0f} MB, "
        f"{export['api_requests']} API requests ({export['import_requests']} imports) + "
        f"{export['token_requests']} token request(s); duplicates {export['duplicates']:,}, "
        f"rejected {export['rejected']}"
    )
    print(
        f"  import POSTs took {export['import_post_s']:.2f}s in all to be answered by the sandbox "
        f"(longest {export['max_import_post_s']:.2f}s); every import applied "
        f"{export['applied_s']:.2f}s after the start"
    )
    if "rate_limit_floor_s" in result:
        print(
            f"rate-limit floor: {result['rate_limit_floor_s']:.2f}s ({export['api_requests']} requests / "
            f"{result['rate_limit']} per s); ratio {result['ratio_to_floor']:.2f}x"
        )
    if "naive" in result:
        naive = result["naive"]
        print(
            f"naive:  {naive['wall_s']:.2f}s, {naive['cpu_s']:.2f}s CPU, {naive['contacts']:,} contacts "
            f"({naive['contacts_per_s']:,.0f}/s), peak RSS {naive['peak_rss_mb']:.0f} MB, "
            f"{naive['api_requests']} API requests"
        )
        if result["rate_limit"]:
            print(
                f"  note: the naive reference has no retries, so its POSTs were spaced to "
                f"{result['rate_limit']} per s (the sandbox's limit) to avoid a 429"
            )
        print(
            f"speed-up vs naive: {result['speedup_vs_naive']:.2f}x wall, "
            f"{result['cpu_ratio_vs_naive']:.2f}x CPU time"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the generated segment")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="sandbox and hook requests/s (0 = off)")
    parser.add_argument("--skip-naive", action="store_true", help="do not run the naive reference")
    parser.add_argument(
        "--skip-dry-run", action="store_true", help="do not first run the export with dry_run=True"
    )
    parser.add_argument("--sizes", type=int, nargs="+", help="run each row count in a fresh process")
    parser.add_argument("--workdir", help="where to write (and reuse) the generated segment")
    parser.add_argument("--keep", action="store_true", help="keep the generated segment")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM: unwind, so the sandbox sub-process is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.sizes:
        results = []
        for rows in args.sizes:
            command = [
                sys.executable,
                __file__,
                "--rows",
                str(rows),
                "--rate-limit",
                str(args.rate_limit),
                "--json",
            ]
            command += ["--skip-naive"] if args.skip_naive else []
            command += ["--skip-dry-run"] if args.skip_dry_run else []
            command += ["--workdir", args.workdir] if args.workdir else []
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
            print_result(results[-1])
        first, last = results[0]["export"], results[-1]["export"]
        print(
            f"peak RSS growth from {results[0]['rows']:,} to {results[-1]['rows']:,} rows: "
            f"{last['peak_rss_mb'] - first['peak_rss_mb']:.0f} MB"
        )
        return 0
    result = benchmark(args)
    if args.json:
        print(json.dumps(result))
    else:
        print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
