"""The job's processes on this machine: which they are, whether they still run, ending them.

At ``init`` every rank tells the others where it runs and which process it is
(:func:`whoami`: the machine, the process id and its start time). A rank can then tell that a
rank on its own machine has ended (:func:`ended`), which names a rank that left without a word
(``os._exit``, killed by a signal) instead of only "not there"; and a rank that ends the job
after a failure ends the ranks on its machine itself (:func:`kill`) rather than leave it all
to the launcher. Linux only (``/proc``): elsewhere no rank judges or ends another by its
process, and the ranks of other machines are left to the launcher.

>>> from fluxml.distributed import processes
>>> me = processes.whoami()
>>> me[1] > 0, processes.ended(me)
(True, False)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

Process = tuple  # (machine, pid, start): what whoami() returns


def whoami() -> Process:
    """``(machine, pid, start)`` of this process; ``machine`` and ``start`` are None where
    ``/proc`` cannot tell them. ``machine`` is the host name, its boot and the pid namespace:
    two machines, or two containers of one host name, never compare their process ids."""
    pid = os.getpid()
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        machine = (socket.gethostname(), boot, os.readlink("/proc/self/ns/pid"))
        return machine, pid, _stat(pid)[1]
    except (OSError, ValueError, IndexError):
        return None, pid, None


def _stat(pid: int) -> tuple[str, int]:
    """The state letter and the start time (clock ticks after boot) of process ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()  # (the name before it may hold spaces)
    return fields[0], int(fields[19])


def ended(process: Process) -> bool:
    """Whether ``process`` (a :func:`whoami` of this machine) has ended: no process of its id
    runs, one started at another time has taken the id, or it is a zombie (ended, not yet
    reaped by its parent, mpiexec's proxy). False where it cannot be told."""
    _, pid, start = process
    if start is None:
        return False
    try:
        state, started = _stat(pid)
    except (FileNotFoundError, ProcessLookupError):
        return True
    except (OSError, ValueError, IndexError):
        return False
    return state in ("Z", "X", "x") or started != start


def kill(processes: list[Process], grace: float) -> None:
    """Give ``processes`` (of this machine) ``grace`` seconds to end, then SIGKILL those still
    running (each checked to be the same process just before; one whose start time is not
    known is left alone)."""
    processes = [p for p in processes if p[2] is not None]
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all(ended(p) for p in processes):
        time.sleep(0.01)
    for p in processes:
        if not ended(p):
            with contextlib.suppress(OSError):
                os.kill(p[1], signal.SIGKILL)
