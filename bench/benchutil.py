#!/usr/bin/env python3
"""Helpers shared by the benchmark scripts, plus a small command line for ``run.sh``.

Standard library only (psycopg is imported lazily by the PostgreSQL helpers), so that
``report.py`` and ``import_bench.py`` do not need aiohttp.

Command line (used by ``bench/run.sh``)::

    python bench/benchutil.py free-port
    python bench/benchutil.py wait-http URL [--timeout S] [--pid PID]
    python bench/benchutil.py pg-recreate NAME [--admin-url URL]   # prints the new DB's URL
    python bench/benchutil.py pg-drop NAME [--admin-url URL]
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import platform
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- host and result records ------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` as a fallback)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def host_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 1,
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON record as a line (creating the parent folder)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=False, separators=(",", ":")) + "\n")


# --- CPU accounting of another process tree (the server) ---------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read_stat(pid: int) -> tuple[int, float] | None:
    """(ppid, utime+stime in seconds) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(")") + 2 :].split()
    # fields[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    try:
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (IndexError, ValueError):
        return None


def proc_tree_cpu_seconds(root_pid: int) -> float | None:
    """User+system CPU seconds used so far by ``root_pid`` and all its live descendants.

    Reads /proc (Linux only); None when the process does not exist or /proc is absent.
    """
    if not Path("/proc").is_dir():
        return None
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _read_stat(int(entry.name))
            if st is not None:
                stats[int(entry.name)] = st
    if root_pid not in stats:
        return None
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total = 0.0
    todo = [root_pid]
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total


# --- network --------------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual small race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def is_loopback_host(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addrs = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addrs) and all(ipaddress.ip_address(a).is_loopback for a in addrs)


def require_loopback_url(url: str) -> None:
    """Refuse to load anything but this machine: the benchmarks are for local runs only."""
    host = urlsplit(url).hostname or ""
    if not is_loopback_host(host):
        raise SystemExit(
            f"error: {url!r} is not a loopback address; the fhirhub benchmarks only send "
            "traffic to a server on this machine (127.0.0.0/8, ::1, localhost)"
        )


def wait_http(url: str, timeout: float, pid: int | None = None) -> tuple[bool, str]:
    """Poll ``url`` until it answers 200, ``timeout`` passes, or process ``pid`` exits."""
    require_loopback_url(url)
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if pid is not None and not _pid_alive(pid):
            return False, f"server process {pid} exited ({last})"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True, "200"
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(getattr(e, "reason", e))
        time.sleep(0.25)
    return False, f"timed out after {timeout:g}s ({last})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent shell) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


# --- PostgreSQL -------------------------------------------------------------------------------


def database_url(admin_url: str, name: str) -> str:
    """``admin_url`` with its database name replaced by ``name``."""
    parts = urlsplit(admin_url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// URL: {admin_url!r}")
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def pg_drop_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def pg_recreate_database(admin_url: str, name: str) -> str:
    """Drop (if present) and create database ``name``; returns its URL."""
    import psycopg
    from psycopg import sql

    pg_drop_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(admin_url, name)


def pg_database_size(admin_url: str, name: str) -> int | None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
    return int(row[0]) if row else None


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port", help="print a free TCP port on 127.0.0.1")
    w = sub.add_parser("wait-http", help="wait until URL answers 200")
    w.add_argument("url")
    w.add_argument("--timeout", type=float, default=60.0)
    w.add_argument("--pid", type=int, help="give up early if this process exits")
    for name in ("pg-recreate", "pg-drop"):
        p = sub.add_parser(name, help=f"{name.split('-')[1]} a PostgreSQL database")
        p.add_argument("name")
        p.add_argument("--admin-url", default=DEFAULT_PG_ADMIN_URL)
    args = ap.parse_args(argv)

    if args.cmd == "free-port":
        print(free_port())
    elif args.cmd == "wait-http":
        ok, why = wait_http(args.url, args.timeout, args.pid)
        if not ok:
            print(f"error: {args.url} not up: {why}", file=sys.stderr)
            return 1
    elif args.cmd == "pg-recreate":
        print(pg_recreate_database(args.admin_url, args.name))
    elif args.cmd == "pg-drop":
        pg_drop_database(args.admin_url, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
