"""The benchmark suite works: ``bench/run.py --quick`` runs to the end, every process it
restored verified its memory, the JSON is written and the table has all its rows. Where the
reference CRIU is found the way the benchmark finds it ($TORPOR_CRIU, else ../shared/criu/criu
beside the repository), every CRIU column is filled and every process CRIU restored passed;
where there is none (a clone elsewhere), every CRIU column says so, with no figure.

Correctness only: the quick mode measures tiny processes once on a shared machine, so no
timing is asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "bench" / "run.py"
FLAVOURS = ("64", "32")


def _criu() -> Path | None:
    """The CRIU the benchmark measures; None where there is none. $TORPOR_CRIU, when set,
    must name one."""
    named = os.environ.get("TORPOR_CRIU")
    if named:
        assert os.access(named, os.X_OK), f"$TORPOR_CRIU names no executable: {named}"
        return Path(named).resolve()
    default = REPO.parent / "shared" / "criu" / "criu"
    return default.resolve() if os.access(default, os.X_OK) else None


def _assert_criu_measured(criu: dict | None, what: str) -> None:
    """CRIU's figures of one row are there: times, and every process it restored PASSed."""
    assert criu is not None, f"{what}: no CRIU figures"
    assert criu["error"] is None, f"{what}: {criu['error']}"
    assert criu["dump_s"] > 0 and criu["restore_s"] > 0, what
    assert criu["verdicts"] and all(v.startswith("PASS") for v in criu["verdicts"]), what


def _assert_ratio(ratio: dict | None, what: str) -> None:
    assert ratio is not None and ratio["dump"] > 0 and ratio["restore"] > 0, what


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
    criu = _criu()
    with_criu = ["--criu", str(criu)] if criu else []
    res = subprocess.run(
        [sys.executable, str(RUN), "--quick", *with_criu, "--results-dir", str(tmp_path)],
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

    for text in ("8 MiB 64-bit", "8 MiB 32-bit", "trivial 64-bit", "trivial 32-bit", "Peak RSS"):
        assert text in res.stdout, f"{text!r} missing from the tables"
    if criu is None:
        _assert_no_criu(data, res.stdout)
    else:
        _assert_criu_beside(data, res.stdout, criu)


def _assert_no_criu(data: dict, out: str) -> None:
    """Without a CRIU binary: no CRIU figure anywhere, and the tables say why."""
    assert data["meta"]["criu"] is None
    rows = data["memory"] + data["fixed"] + data["rss"]
    rows += [r for by in data["growth"].values() for g in by.values() for r in g["rows"]]
    assert all(r.get("criu") is None for r in rows)
    assert "no CRIU" in out


def _assert_criu_beside(data: dict, out: str, criu: Path) -> None:
    """CRIU beside torpor, in every table and both flavours."""
    assert data["meta"]["criu"]["path"] == str(criu)
    for row in data["memory"]:
        what = f"memory {row['size_mib']} MiB {row['flavour']}-bit"
        _assert_criu_measured(row["criu"], what)
        assert row["criu"]["image_bytes"] >= 8 << 20
        for via in ("API", "command"):
            _assert_ratio(row["criu_ratio"][via], f"{what} {via}")
            assert row["command"]["dump_s"] > 0 and row["command"]["restore_s"] > 0
    for row in data["fixed"]:
        what = f"trivial {row['flavour']}-bit {row['via']}"
        _assert_criu_measured(row["criu"], what)
        _assert_ratio(row["criu_ratio"], what)
    for kind, by_flavour in data["growth"].items():
        for flavour, group in by_flavour.items():
            assert group["criu_fit"]["dump"] is not None, f"{kind} {flavour}-bit"
            for row in group["rows"]:
                what = f"{kind} {row['count']} {flavour}-bit"
                _assert_criu_measured(row["criu"], what)
                if row["supported"]:
                    _assert_ratio(row["criu_ratio"], what)
    for row in data["rss"]:
        _assert_criu_measured(row["criu"], f"peak RSS {row['flavour']}-bit")
        assert row["criu"]["per_run"][0]["criu_dump_maxrss_kib"] > 0
    theirs = data["criu_verified"]
    assert theirs["restored"] > 0 and theirs["passed"] == theirs["restored"]
    against = [t for t in data["targets"] if "CRIU / torpor" in t["target"]]
    assert against and all(t["value"] is not None for t in against)

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
        "CRIU / torpor",
        "verified CRIU",
        f"processes restored by CRIU {data['meta']['criu']['version']} verified",
        "dump limit",
        "restore limit",
        "memcpy",
        "Peak RSS",
    ):
        assert text in out, f"{text!r} missing from the tables"
    for kind in ("mappings", "threads", "processes"):
        for flavour in FLAVOURS:
            assert f"{kind} {flavour}-bit" in out
    assert "no CRIU" not in out and "CRIU failed" not in out
