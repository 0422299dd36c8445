"""Benchmark the sandbox's handling of ~4 MB contacts_json_import bodies.

    python benchmarks/sandbox_benchmark.py                     # 28 bodies in-process, 28 over HTTP,
                                                               # a 1,000,000-member list
    python benchmarks/sandbox_benchmark.py --bodies 10 --http-bodies 0 --body-bytes 4000000
    python benchmarks/sandbox_benchmark.py --bodies 0 --http-bodies 0 --members 1000000

It builds export-like bodies (email, first name, last name and one custom field a contact,
every body new addresses, so the account grows as in a 1,000,000-contact export) and times,
body by body, the three steps the import endpoint runs, by calling the sandbox's own
functions on one in-memory account (``SandboxState``):

- parse: ``parse_json_body`` (the ``json.loads`` of the body);
- validate: ``take_import`` (shape, unknown properties, 4 MB / 40,000 cuts),
  ``check_list_ids`` and ``validate_contacts``, as ``POST .../contacts_json_import`` does;
- apply: ``accept_import`` and ``drain`` (what the background applier, or the first read that
  needs it, does).

Then, unless ``--http-bodies 0``, it starts an in-process ``ConstantContactSandbox`` (rate
limit, token rate limit and daily quota off) and times over real HTTP on localhost the POST's
answer (parse and validate, not apply) and a ``GET /v3/activities/{id}`` right after it (which
first applies the queued import); then, on a fresh sandbox, it posts every body back to back
and times the answers and the first read after them. Building the bodies is not timed; the
garbage collector stays on, as in a user's test process. It prints median, min and max per
step and contacts a second at the median.

Then, unless ``--members 0``, what the export state asks of a list of ``--members`` members
(default 1,000,000), over HTTP: the memory the seeded list takes (resident set growth), the
``membership_count`` of the list, a quiet-day ``updated_after`` query, the same query after 1%
of the members changed (paged, ``include=list_memberships``), ``optout_after``, and a full
listing of the list (members / 500 requests).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests

from airflow_provider_constantcontact.sandbox import ConstantContactSandbox
from airflow_provider_constantcontact.sandbox.imports import parse_json_body, take_import, validate_contacts
from airflow_provider_constantcontact.sandbox.state import SandboxState

CUSTOM_FIELD = "loyalty_tier"
FIRST_NAMES = ("Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Sophia", "Elijah", "Charlotte", "Mateo")
LAST_NAMES = ("Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez")
TIERS = ("bronze", "silver", "gold", "platinum")
DOMAINS = ("example.com", "example.org", "mail.example.net")


def contact(n: int) -> dict[str, str]:
    """The ``n``-th generated contact, as an export sends it."""
    first, last = FIRST_NAMES[n % len(FIRST_NAMES)], LAST_NAMES[n // 7 % len(LAST_NAMES)]
    return {
        "email": f"{first.lower()}.{last.lower()}.{n}@{DOMAINS[n % len(DOMAINS)]}",
        "first_name": first,
        "last_name": last,
        f"cf:{CUSTOM_FIELD}": TIERS[n % len(TIERS)],
    }


def build_body(start: int, body_bytes: int, list_id: str) -> tuple[bytes, int]:
    """An import body of at most ``body_bytes`` with contacts ``start``, ``start + 1``, ...;
    returns it and its number of contacts."""
    tail = json.dumps({"list_ids": [list_id]}, separators=(",", ":"))[1:]
    head = '{"import_data":['
    encoded: list[str] = []
    size = len(head) + 1 + len(tail)
    n = start
    while True:
        item = json.dumps(contact(n), separators=(",", ":"))
        if size + len(item) + 1 > body_bytes:
            break
        encoded.append(item)
        size += len(item) + 1
        n += 1
    return f"{head}{','.join(encoded)}],{tail}".encode(), len(encoded)


def bodies(count: int, body_bytes: int, list_id: str) -> Iterator[tuple[bytes, int]]:
    """``count`` bodies of new contacts each, built one at a time."""
    start = 0
    for _ in range(count):
        body, contacts = build_body(start, body_bytes, list_id)
        start += contacts
        yield body, contacts


def timed(step: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``step``; return its result and its wall time in seconds."""
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def report(title: str, timings: dict[str, list[float]], contacts: list[int]) -> None:
    """Median, min and max per step (ms) and contacts a second at the median."""
    per_body = statistics.median(contacts)
    print(
        f"\n{title}: {len(contacts)} bodies, {per_body:,.0f} contacts a body (median),"
        f" {sum(contacts):,} in all"
    )
    print(f"  {'step':<34}{'median':>9}{'min':>9}{'max':>9}{'contacts/s':>14}")
    for step, seconds in timings.items():
        median = statistics.median(seconds)
        print(
            f"  {step:<34}{median * 1000:>7.1f}ms{min(seconds) * 1000:>7.1f}ms"
            f"{max(seconds) * 1000:>7.1f}ms{per_body / median:>14,.0f}"
        )


def bench_in_process(count: int, body_bytes: int) -> None:
    """Parse, validate and apply through the sandbox's functions on one growing account."""
    state = SandboxState()
    list_id = state.create_list("Benchmark")["list_id"]
    state.create_custom_field(CUSTOM_FIELD)
    timings: dict[str, list[float]] = {
        "parse": [],
        "validate": [],
        "apply": [],
        "parse + validate + apply": [],
    }
    sizes, contacts = [], []
    for body, _ in bodies(count, body_bytes, list_id):
        payload, parse = timed(lambda body=body: parse_json_body(body))

        def validate(body: bytes = body, payload: Any = payload) -> tuple[list[Any], list[Any]]:
            taken, list_ids = take_import(body, payload)
            state.check_list_ids(list_ids)
            validate_contacts(taken, frozenset(state.custom_field_names))
            return taken, list_ids

        (taken, list_ids), check = timed(validate)

        def apply(taken: list[Any] = taken, list_ids: list[Any] = list_ids) -> None:
            state.accept_import(taken, list_ids)
            state.drain()

        _, applied = timed(apply)
        for step, seconds in zip(timings, (parse, check, applied, parse + check + applied), strict=True):
            timings[step].append(seconds)
        sizes.append(len(body))
        contacts.append(len(taken))
    assert len(state.contacts) == sum(contacts), "every generated contact is new"
    print(
        f"\nbody size: {min(sizes):,}-{max(sizes):,} bytes; account grew to {len(state.contacts):,} contacts"
    )
    report("in-process, the sandbox's own steps", timings, contacts)


@contextmanager
def http_sandbox() -> Iterator[tuple[ConstantContactSandbox, requests.Session]]:
    """A started in-process sandbox (limits off) and a session holding an access token."""
    with ConstantContactSandbox(
        rate_limit=0, token_rate_limit=0, daily_quota=0, lists=["Benchmark"], custom_fields=[CUSTOM_FIELD]
    ) as sandbox:
        token = requests.post(
            sandbox.token_url,
            auth=(sandbox.client_id, sandbox.client_secret),
            data={"grant_type": "refresh_token", "refresh_token": sandbox.refresh_token},
            timeout=10,
        )
        token.raise_for_status()
        with requests.Session() as session:
            session.headers.update(
                {
                    "Authorization": f"Bearer {token.json()['access_token']}",
                    "Content-Type": "application/json",
                }
            )
            yield sandbox, session


def bench_http(count: int, body_bytes: int) -> None:
    """Over HTTP to an in-process sandbox: each POST's answer and the read right after it; then,
    on a fresh sandbox, every body posted back to back and the first read after them."""
    with http_sandbox() as (sandbox, session):
        list_id = sandbox.list_ids["Benchmark"]
        url = sandbox.api_base_url + "/activities/contacts_json_import"
        timings: dict[str, list[float]] = {
            "POST answered (parse + validate)": [],
            "GET right after (applies)": [],
        }
        contacts = []
        for body, _ in bodies(count, body_bytes, list_id):
            response, answered = timed(lambda body=body: session.post(url, data=body, timeout=60))
            response.raise_for_status()
            activity = response.json()
            link = sandbox.base_url + activity["_links"]["self"]["href"]
            read, first_read = timed(lambda link=link: session.get(link, timeout=60))
            assert read.json()["state"] == "completed", read.text
            timings["POST answered (parse + validate)"].append(answered)
            timings["GET right after (applies)"].append(first_read)
            contacts.append(activity["status"]["items_total_count"])
    report("over HTTP, in-process sandbox, limits off, one body at a time", timings, contacts)

    with http_sandbox() as (sandbox, session):
        url = sandbox.api_base_url + "/activities/contacts_json_import"
        prepared = list(bodies(count, body_bytes, sandbox.list_ids["Benchmark"]))
        started = time.perf_counter()
        answers = [session.post(url, data=body, timeout=60) for body, _ in prepared]
        answered = time.perf_counter() - started
        assert all(r.status_code == 201 for r in answers)
        last = sandbox.base_url + answers[-1].json()["_links"]["self"]["href"]
        read, first_read = timed(lambda: session.get(last, timeout=120))
        assert read.json()["state"] == "completed", read.text
        total = sum(n for _, n in prepared)
        print(
            f"\nover HTTP, {count} bodies ({total:,} contacts) back to back: all answered in"
            f" {answered:.2f} s ({total / answered:,.0f} contacts/s); the first read after them"
            f" (applies what is still queued) {first_read:.2f} s"
        )


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def read_all(session: requests.Session, sandbox: ConstantContactSandbox, **params: Any) -> tuple[int, int]:
    """Page through a contacts listing; returns (contacts, requests)."""
    response = session.get(sandbox.api_base_url + "/contacts", params=params, timeout=120)
    contacts = requests_made = 0
    while True:
        response.raise_for_status()
        body = response.json()
        contacts += len(body["contacts"])
        requests_made += 1
        href = body.get("_links", {}).get("next", {}).get("href")
        if not href:
            return contacts, requests_made
        response = session.get(sandbox.base_url + href, timeout=120)


def bench_members(members: int) -> None:
    """The export state's questions to a list of ``members`` members, over HTTP."""
    changed = max(1, members // 100)
    with http_sandbox() as (sandbox, session):
        list_id = sandbox.list_ids["Benchmark"]
        emails = [contact(n)["email"] for n in range(members)]
        before = rss_bytes()
        _, seeding = timed(lambda: sandbox.add_list_members(list_id, emails, first_name="Olivia"))
        grown = rss_bytes() - before
        print(
            f"\na list of {members:,} members: seeded in {seeding:.1f} s; resident memory grew by"
            f" {grown / 2**20:,.0f} MiB ({grown / members:,.0f} bytes a member, the addresses included)"
        )
        since = sandbox.now()
        sandbox.advance_time(86400)
        figures: list[tuple[str, float, str]] = []

        def query(label: str, **params: Any) -> None:
            (count, pages), seconds = timed(lambda: read_all(session, sandbox, **params))
            figures.append((label, seconds, f"{count:,} contacts, {pages:,} requests"))

        def count_of(kind: str) -> None:
            url = f"{sandbox.api_base_url}/contact_lists/{list_id}"
            response, seconds = timed(
                lambda: session.get(url, params={"include_membership_count": kind}, timeout=60)
            )
            figures.append((f"membership_count={kind}", seconds, f"{response.json()['membership_count']:,}"))

        count_of("all")
        count_of("active")
        quiet = {"updated_after": sandbox.now().isoformat(), "lists": list_id, "limit": 500}
        query("quiet day: updated_after, lists", **quiet)
        query("quiet day: updated_after, whole account", updated_after=sandbox.now().isoformat())
        day = sandbox.now()
        sandbox.advance_time(1)
        sandbox.add_list_members(list_id, emails[:changed], first_name="Changed")
        sandbox.leave_list(list_id, emails[changed : 2 * changed])
        sandbox.mark_unsubscribed(emails[2 * changed : 2 * changed + changed // 10])
        query(
            f"after {changed:,} changed, {changed:,} left, {changed // 10:,} unsubscribed: updated_after",
            updated_after=day.isoformat(),
            include="list_memberships",
            limit=500,
        )
        query("optout_after", optout_after=day.isoformat(), limit=500)
        count_of("active")
        query("full listing of the list", lists=list_id, limit=500)
        query("created_after the seeding (whole account)", created_after=since.isoformat(), limit=500)
    print(f"  {'question':<78}{'time':>10}  answer")
    for label, seconds, answer in figures:
        print(f"  {label:<78}{seconds * 1000:>8.1f}ms  {answer}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bodies", type=int, default=28, help="bodies timed in-process")
    parser.add_argument("--http-bodies", type=int, default=28, help="bodies timed over HTTP (0: skip)")
    parser.add_argument("--body-bytes", type=int, default=4_000_000, help="size of each body, at most")
    parser.add_argument(
        "--members", type=int, default=1_000_000, help="members of the list the change queries read (0: skip)"
    )
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()} on {platform.machine()}, {sys.platform}")
    if args.bodies:
        bench_in_process(args.bodies, args.body_bytes)
    if args.http_bodies:
        bench_http(args.http_bodies, args.body_bytes)
    if args.members:
        bench_members(args.members)
    return 0


if __name__ == "__main__":
    sys.exit(main())
