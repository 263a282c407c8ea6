"""Child processes that end with the process that started them: ffmpeg, and the workers of ``render(devices=)``.

A child must not outlive its parent: an orphaned ffmpeg writes on for minutes, an orphaned worker holds a
model in memory. Three things see to it:

* On Linux the child asks the kernel for a parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), which
  works even when the parent is killed with SIGKILL and has no chance to clean up.
* Elsewhere, and as a second line, a worker watches its parent and exits when it is gone.
* ``run`` (for ffmpeg) stops the child itself when the caller is interrupted (Ctrl-C, an exception).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1


def _prctl():
    """libc's ``prctl`` on Linux (looked up once, in the parent, so a forked child only calls it), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def end_with_parent(parent_pid: int) -> None:
    """In a child: have the kernel kill this process when its parent dies; exit now if it already has."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(1)


def watch_parent(parent_pid: int, interval: float = 1.0) -> threading.Thread:
    """In a child: a daemon thread that ends the process once its parent is gone (where no prctl exists)."""
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        os._exit(1)

    thread = threading.Thread(target=watch, name="ttlesson-parent-watch", daemon=True)
    thread.start()
    return thread


def run(argv: Sequence[str]) -> tuple[int, bytes, bytes]:
    """Run ``argv`` to the end and return (exit status, stdout, stderr); the child dies with this process.

    If the caller is interrupted while it runs (KeyboardInterrupt, SystemExit from a signal handler, any
    exception), the child is killed and waited for before the interruption goes on.
    """
    parent = os.getpid()
    preexec = (lambda: end_with_parent(parent)) if _PRCTL is not None else None
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=preexec)
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, stdout, stderr
