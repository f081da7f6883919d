"""Ends the Ray processes of a local search once its driver is gone, however it went.

Why a separate process: Ray's head processes share the driver's fate, but its dashboard and
runtime-env agents were seen outliving a SIGKILLed driver (Ray 2.60). A process started in its
own session (so Ctrl-C in the terminal does not reach it) remembers the driver's Ray descendants
while the driver lives and terminates those still running after it dies.

    python -m remedies.search.reaper DRIVER_PID
"""

from __future__ import annotations

import sys
import time

import psutil


def _is_ray(p: psutil.Process) -> bool:
    try:
        return p.name().startswith("ray::") or any("ray" in a for a in p.cmdline()[:3])
    except psutil.Error:
        return False


def watch(driver_pid: int, every_s: float = 0.5) -> int:
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return 0
    seen: dict[int, psutil.Process] = {}
    while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
        try:
            for c in driver.children(recursive=True):
                if c.pid not in seen and _is_ray(c):
                    seen[c.pid] = c
        except psutil.Error:
            pass
        time.sleep(every_s)
    left = [p for p in seen.values() if p.is_running()]
    for p in list(left):
        try:
            left.extend(c for c in p.children(recursive=True) if c not in left)
        except psutil.Error:
            pass
    for p in left:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(left, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(left)


if __name__ == "__main__":
    sys.exit(0 if watch(int(sys.argv[1])) >= 0 else 1)
