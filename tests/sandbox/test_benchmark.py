"""The sandbox benchmark keeps working: a tiny run of the script."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_sandbox_benchmark_runs_with_small_bodies() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "sandbox_benchmark.py"),
            *("--bodies", "2", "--http-bodies", "2", "--body-bytes", "200000", "--members", "3000"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    out = result.stdout
    sizes = [int(size.replace(",", "")) for size in re.findall(r"body size: ([\d,]+)-([\d,]+) bytes", out)[0]]
    assert 150_000 < sizes[0] <= sizes[1] <= 200_000
    for step in ("parse", "validate", "apply", "POST answered", "GET right after"):
        assert re.search(rf"^  {re.escape(step)}.*?\s[\d.]+ms", out, re.M), step
    assert "back to back: all answered in" in out
    assert "a list of 3,000 members: seeded in" in out
    assert re.search(r"quiet day: updated_after, lists\s+[\d.]+ms  0 contacts, 1 requests", out)
    # 1% of the members changed, 1% left, 0.1% unsubscribed: 30 + 30 + 3 found in one page
    assert re.search(r"unsubscribed: updated_after\s+[\d.]+ms  63 contacts, 1 requests", out)
    assert re.search(r"full listing of the list\s+[\d.]+ms  2,970 contacts, 6 requests", out)
