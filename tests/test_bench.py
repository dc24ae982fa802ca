"""The benchmark suite works: ``bench/run.py --quick`` runs to the end, every process it
restored verified its memory, the JSON is written and the table has all its rows.

Correctness only: the quick mode measures tiny processes once on a shared machine, so no
timing is asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "bench" / "run.py"
FLAVOURS = ("64", "32")


def _verdicts(data: dict) -> list[str]:
    found = []
    for row in data["memory"] + data["fixed"] + data["rss"]:
        found += row["verdicts"]
    for by_flavour in data["growth"].values():
        for group in by_flavour.values():
            for row in group["rows"]:
                found += row.get("verdicts", [])
    return found


def test_quick_benchmark(tmp_path):
    res = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stdout + res.stderr

    latest = tmp_path / "latest.json"
    stamped = [p for p in tmp_path.glob("*.json") if p.name != "latest.json"]
    assert latest.is_file() and len(stamped) == 1
    data = json.loads(latest.read_text())
    assert data == json.loads(stamped[0].read_text())
    assert str(stamped[0]) in res.stdout

    verdicts = _verdicts(data)
    assert verdicts, "no process was restored"
    assert all(v.startswith("PASS") for v in verdicts), verdicts
    assert data["verified"] == {"restored": len(verdicts), "passed": len(verdicts)}

    assert [(r["size_mib"], r["flavour"]) for r in data["memory"]] == [(8, f) for f in FLAVOURS]
    for row in data["memory"]:
        assert row["pages_bytes"] >= 8 << 20
        assert row["limit"]["bytes"] >= 8 << 20
    assert {(r["via"], r["flavour"]) for r in data["fixed"]} == {
        (via, f) for via in ("API", "CLI") for f in FLAVOURS
    }
    assert data["startup"]["seconds"] > 0
    assert all("beyond_startup" in r for r in data["fixed"] if r["via"] == "CLI")
    assert [(r["size_mib"], r["flavour"]) for r in data["rss"]] == [(8, f) for f in FLAVOURS]
    for row in data["rss"]:
        assert row["dump_maxrss_kib"] > 0 and row["restore_maxrss_kib"] > 0

    for kind, counts in (
        ("mappings", [1, 100]),
        ("threads", [1, 10, 100]),
        ("processes", [1, 10, 50]),
    ):
        for flavour in FLAVOURS:
            group = data["growth"][kind][flavour]
            assert [r["count"] for r in group["rows"]] == counts
            assert group["rows"][0]["supported"], f"{kind} 1 {flavour}-bit was refused"
            for row in group["rows"]:
                if not row["supported"]:
                    assert "not supported" in row["message"]
    for flavour in FLAVOURS:
        assert data["growth"]["mappings"][flavour]["fit"]["restore"] is not None

    out = res.stdout
    for text in (
        "8 MiB 64-bit",
        "8 MiB 32-bit",
        "trivial 64-bit",
        "trivial 32-bit",
        "API (warm)",
        "CLI (whole command)",
        "interpreter start-up",
        "CRIU dump",
        "CRIU restore",
        "dump limit",
        "restore limit",
        "memcpy",
        "Peak RSS",
    ):
        assert text in out, f"{text!r} missing from the tables"
    for kind in ("mappings", "threads", "processes"):
        for flavour in FLAVOURS:
            assert f"{kind} {flavour}-bit" in out
