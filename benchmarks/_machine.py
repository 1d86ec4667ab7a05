"""What the synapse-context benchmarks record about the machine and the process's CPU time
(imported by scripts run as ``python benchmarks/NAME.py``: this folder is on ``sys.path``)."""

from __future__ import annotations

import os
import platform
import resource
import time


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
