"""Run the scheduled example DAG end to end against a local Constant Contact sandbox.

Nothing needs to be running and no Constant Contact account is used. The demo:

1. creates a throw-away AIRFLOW_HOME with a SQLite metadata DB (``airflow db migrate``);
2. starts the sandbox on 127.0.0.1 (a free port) in this process; it holds the import until the
   import sensor's first poll, so the sensor always defers (visibly waits in the triggerer),
   then processes it at ``--processing-rate``;
3. writes a sample segment (Parquet, a few thousand customers in two segments, with some
   invalid and duplicate emails) and creates a contact list in the sandbox;
4. points the connection (``AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT``) and the DAG's inputs
   (``AIRFLOW_VAR_CONSTANTCONTACT_SEGMENT_EXPORT``) at them through the environment;
5. runs ``airflow dags test constantcontact_segment_export`` with ``example_dags/`` as the DAGs
   folder, then prints the export summary and the import summary read from XCom, and the
   list's size in the sandbox;
6. stops the sandbox and removes the temporary home (``--keep`` leaves it for a look).

It exits non-zero when a step fails or the list does not hold exactly the valid, de-duplicated
contacts of the exported segment. ``scripts/demo`` prepares the virtualenv and runs this file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DAGS_FOLDER = REPO_ROOT / "example_dags"
DAG_ID = "constantcontact_segment_export"
EXPORT_TASK = "export_segment"
WAIT_TASK = "wait_for_import"
SEGMENTS = ("vip", "regular")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman")
TIERS = ("gold", "silver", "bronze")


def generate_segment(path: Path, rows: int = 3000, seed: int = 7) -> dict[str, dict[str, dict[str, str]]]:
    """Write a sample customer segment as Parquet; return what each segment should import.

    Columns: ``email``, ``first_name``, ``last_name``, ``loyalty_tier``, ``segment``. About 3% of
    the rows have an invalid or empty email and 4% repeat an earlier customer's email (with other
    casing, surrounding spaces and another first name: the first occurrence must win); some names
    are missing. The result maps segment -> normalised email -> the fields Constant Contact
    should hold (``first_name``, ``last_name``, ``cf:loyalty_tier``; absent ones left out).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    columns: dict[str, list[Any]] = {"email": [], "first_name": [], "last_name": [], "loyalty_tier": []}
    columns["segment"] = []
    expected: dict[str, dict[str, dict[str, str]]] = {segment: {} for segment in SEGMENTS}
    seen: list[tuple[str, str]] = []
    for n in range(rows):
        segment = SEGMENTS[0] if rng.random() < 0.4 else SEGMENTS[1]
        first = rng.choice(FIRST_NAMES) if rng.random() > 0.05 else None
        last = rng.choice(LAST_NAMES)
        tier = rng.choice(TIERS)
        roll = rng.random()
        valid = True
        if roll < 0.03:
            email = rng.choice([f"customer{n}.example.com", f"customer{n}@", "", None, "not an email"])
            valid = False
        elif roll < 0.07 and seen:
            original, segment = rng.choice(seen)
            email = f"  {original.upper()} "
        else:
            email = f"Customer.{n}@Example.com" if n % 5 == 0 else f"customer.{n}@example.com"
        columns["email"].append(email)
        columns["first_name"].append(first)
        columns["last_name"].append(last)
        columns["loyalty_tier"].append(tier)
        columns["segment"].append(segment)
        if not valid:
            continue
        normalised = email.strip().lower()
        if normalised in expected[segment]:
            continue
        seen.append((normalised, segment))
        fields = {"last_name": last, "cf:loyalty_tier": tier}
        if first:
            fields["first_name"] = first
        expected[segment][normalised] = fields
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return expected


def airflow_environment(home: Path) -> dict[str, str]:
    """Settings for a self-contained Airflow: its own home, SQLite DB and Fernet key."""
    from cryptography.fernet import Fernet

    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }


def read_xcom(dag_id: str, task_id: str, key: str = "return_value", run_id: str | None = None) -> Any:
    """Read one XCom value of the newest (or the given) run straight from the metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        if run_id is None:
            run_id = session.scalar(
                select(DagRun.run_id).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
            )
        row = session.scalar(
            select(XComModel).where(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.map_index == -1,
            )
        )
        return None if row is None else XComModel.deserialize_value(row)


def run_airflow(args: Sequence[str], env: dict[str, str], log_path: Path, timeout: float) -> int:
    """Run an ``airflow`` command, its output going to ``log_path``; return its exit code."""
    with log_path.open("ab") as log:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        ).returncode


def tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# The log lines of both formats: "<ISO time> [info     ] <event>" (structlog, as Airflow 3.1+
# writes them) and, from Airflow 3.0's `dags test`, also "2025-01-01 12:00:00 [info ...] <event>"
# and "[2025-01-01T12:00:00.000+0000] {file.py:1} INFO - <event>" (logging).
WAIT_EVENTS = re.compile(
    r"^\[?\d{4}-\d\d-\d\d[T ](?P<time>\d\d:\d\d:\d\d)[^\s\]]*\]?"
    r" (?:\[\w+\s*\]|\{[^}]*\} \w+ -) "
    r"(?P<event>Constant Contact import [\d.]+% done \(.*?\)"
    r"|Pausing task as DEFERRED|\[DAG TEST\] Trigger completed)"
)


def wait_events(log_path: Path) -> list[str]:
    """How the import wait went, from the Airflow log: progress polls, the deferral, the trigger."""
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        match = WAIT_EVENTS.match(line)
        # Airflow 3.0 may log a line twice, in two formats: once is enough.
        if match and (event := f"  {match['time']}  {match['event']}") not in events[-1:]:
            events.append(event)
    return events


def format_summaries(export: dict, imported: dict, list_size: int) -> str:
    """The human-readable end of the demo."""
    rejected = ", ".join(f"{reason}: {count}" for reason, count in sorted(export.get("rejected", {}).items()))
    lines = [
        "Export summary (XCom of export_segment):",
        f"  rows read            {export.get('rows_read')}",
        f"  contacts submitted   {export.get('contacts_submitted')}",
        f"  duplicates dropped   {export.get('duplicates')}",
        f"  rows rejected        {sum(export.get('rejected', {}).values())} ({rejected or 'none'})",
        f"  import requests      {export.get('batches')}",
        f"  activity ids         {', '.join(export.get('activity_ids', []))}",
        "Import summary (XCom of wait_for_import):",
    ]
    for activity_id, activity in imported["activities"].items():
        lines.append(f"  activity {activity_id}: {activity['state']}, {activity['percent_done']:.0f}% done")
    totals = imported["totals"]
    lines += [
        f"  contacts processed   {totals['items_completed_count']} of {totals['items_total_count']}",
        f"  errors               {totals['error_count']} ({totals['correctable_count']} correctable)",
        f"  not added (unsubscribed) {totals['cannot_add_to_list_count']}",
        f"Sandbox contact list now holds {list_size} contacts.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=3000, help="customers in the sample segment")
    parser.add_argument("--segment", default="vip", choices=SEGMENTS, help="segment to export")
    parser.add_argument(
        "--processing-rate",
        type=float,
        default=100.0,
        help="contacts per second the sandbox imports (slow enough that the sensor waits)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for the DAG run")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="constantcontact-demo-"))
    home = work / "airflow"
    home.mkdir()
    # Airflow reads its configuration once, at import: settle it before anything imports Airflow.
    env = airflow_environment(home)
    os.environ.update(env)
    for name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
        del os.environ[name]
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    log_path = work / "airflow.log"
    started = time.monotonic()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)

    from airflow_provider_constantcontact.sandbox import ConstantContactSandbox

    try:
        step(f"Airflow home {home} (SQLite): airflow db migrate")
        if run_airflow(["db", "migrate"], dict(os.environ), log_path, timeout=300) != 0:
            print(tail(log_path), file=sys.stderr)
            print("FAILED: airflow db migrate", file=sys.stderr)
            return 1

        with ConstantContactSandbox(
            host="127.0.0.1",
            port=0,
            processing_rate=args.processing_rate,
            custom_fields=["loyalty_tier"],  # the example DAG maps cf:loyalty_tier
        ) as sandbox:
            # The sensor's first poll, before it defers, finds the import running on any machine.
            sandbox.hold_processing(polls=1)
            step(
                f"Constant Contact sandbox on {sandbox.base_url} (imports held until the sensor's "
                f"first poll, then {args.processing_rate:g} contacts/s)"
            )
            list_id = sandbox.create_list("Demo customers")
            source = work / "segments" / "customers.parquet"
            expected = generate_segment(source, rows=args.rows)[args.segment]
            step(
                f"Sample segment {source.name}: {args.rows} rows, exporting segment {args.segment!r} "
                f"({len(expected)} valid unique emails) to list {list_id}"
            )
            run_env = dict(os.environ)
            run_env["AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT"] = sandbox.connection_json()
            run_env["AIRFLOW_VAR_CONSTANTCONTACT_SEGMENT_EXPORT"] = json.dumps(
                {
                    "source": str(source),
                    "list_ids": [list_id],
                    "segment_column": "segment",
                    "segments": [args.segment],
                }
            )

            step(f"airflow dags test {DAG_ID} (log: {log_path if args.keep else 'shown on failure'})")
            code = run_airflow(["dags", "test", DAG_ID], run_env, log_path, timeout=args.timeout)
            export = read_xcom(DAG_ID, EXPORT_TASK)
            imported = read_xcom(DAG_ID, WAIT_TASK)
            if code != 0 or export is None or imported is None:
                print(tail(log_path), file=sys.stderr)
                print(f"FAILED: airflow dags test exited {code}; the run did not succeed", file=sys.stderr)
                return 1
            members = sandbox.list_members(list_id)
            step("DAG run succeeded; how wait_for_import waited (UTC):")
            print("\n".join(wait_events(log_path)) + "\n", flush=True)
            print(format_summaries(export, imported, len(members)), flush=True)

        if set(members) != set(expected):
            print(
                f"\nFAILED: the list holds {len(members)} contacts, expected the {len(expected)} "
                "valid unique emails of the segment",
                file=sys.stderr,
            )
            return 1
        print(
            f"\nOK: the list holds exactly the {len(expected)} valid, de-duplicated contacts of the segment."
        )
        return 0
    finally:
        if args.keep:
            print(f"Kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
