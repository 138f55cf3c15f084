"""processes.py: telling that a process of this machine has ended, and ending one, checked
on child processes of the test (no MPI needed)."""

import subprocess
import time

import pytest

from fluxml.distributed import processes

pytestmark = pytest.mark.skipif(processes.whoami()[2] is None,
                                reason="no /proc: no rank judges another by its process")


def child(seconds=60):
    p = subprocess.Popen(["sleep", str(seconds)])
    machine = processes.whoami()[0]
    return p, (machine, p.pid, processes._stat(p.pid)[1])


def test_a_running_process_has_not_ended_and_one_reaped_or_a_zombie_has():
    p, me = child()
    try:
        assert not processes.ended(me)
        # another process with the same id (started at another time) is not this one
        assert processes.ended((me[0], me[1], me[2] + 1))
        assert not processes.ended((me[0], me[1], None))  # cannot tell: not ended
    finally:
        p.kill()
    deadline = time.monotonic() + 10
    while processes._stat(p.pid)[0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert processes._stat(p.pid)[0] == "Z"  # ended, not reaped yet by its parent (us)
    assert processes.ended(me)
    p.wait()
    assert processes.ended(me)


def test_kill_ends_a_process_still_running_after_the_grace_and_only_that_one():
    p, me = child()
    q, other = child()
    try:
        start = time.monotonic()
        # q under another start time (its id taken over, as it were) and one of unknown start
        # time are left alone
        processes.kill([me, (other[0], other[1], other[2] + 1), (other[0], other[1], None)],
                       grace=0.3)
        assert p.wait(timeout=10) == -9 and time.monotonic() - start >= 0.3
        assert q.poll() is None
    finally:
        p.kill()
        q.kill()
        q.wait()


def test_kill_waits_no_longer_than_the_processes_take_to_end():
    p, me = child(0.2)
    start = time.monotonic()
    processes.kill([me], grace=30)
    assert time.monotonic() - start < 10 and p.wait(timeout=10) == 0
