"""Helpers shared by the benchmark scripts (run as ``python tools/<script>.py``)."""

from __future__ import annotations

import os
import platform
import subprocess
import time


def machine() -> str:
    """A one-line description of this machine."""
    return f"{platform.node()} ({os.cpu_count()} cpus, {platform.machine()})"


def run(cmd: list[str]) -> dict:
    """Run ``cmd`` as a child process; its wall time and its own peak RSS (``os.wait4``)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stdout": out.strip(),
    }


def size_row(method: str, size: int, res: dict) -> dict:
    """One result row of a square-size benchmark: megapixels and Mpx/s from ``run``'s result."""
    res = {k: v for k, v in res.items() if k != "stdout"}
    return {
        "method": method,
        "size": size,
        "megapixels": size * size / 1e6,
        "mpx_per_s": round(size * size / 1e6 / res["seconds"], 2),
        **res,
    }
