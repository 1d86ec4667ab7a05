"""What the benchmarks record about the machine, the process's CPU time and a monitored child
process (imported by scripts run as ``python benchmarks/NAME.py``: this folder is on
``sys.path``)."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import threading
import time
from pathlib import Path


def machine() -> dict:
    """Architecture, cores, RAM, GPU (name or "no GPU"), load at the start, date."""
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {mem_gb:.0f} GB RAM, {gpu}",
        "load_average_start": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def cpu_s() -> float:
    """User + system CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _rss_anon_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run_monitored(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``cmd``: exit code, wall s, CPU s (``os.wait4`` of the child, all threads), peak
    RssAnon MB (sampled every 50 ms: memory-mapped file pages are not counted) and the tail
    of its output (stdout and stderr together)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            kb = _rss_anon_kb(proc.pid)
            if kb:
                peak[0] = max(peak[0], kb)
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    done.set()
    thread.join()
    return {
        "code": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_anon_mb": round(peak[0] / 1024),
        "output_tail": out.decode(errors="replace")[-2000:],
    }
