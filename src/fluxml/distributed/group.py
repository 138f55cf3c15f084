"""The process group: rank and world size from MPI, and waiting that cannot hang forever.

Every wait of ``fluxml.distributed`` goes through :meth:`Group.wait_until` (or
:meth:`Group.wait`, for MPI requests): it tests what it waits for (MPI requests, flags the
other ranks set in shared memory), reads the control channel (failure notices and roll calls
from the other ranks) and gives up after ``timeout`` seconds. So a rank that raises makes the
others raise ``RankError`` naming it, and a rank that is stuck makes the others raise
``DistributedTimeout`` naming the ranks that never reached the step, instead of a job that
hangs. Nothing is sent on the control channel while all is well (a step costs no heartbeat
messages): only at a timeout does the waiting rank call the roll, and the ranks that are
waiting too answer with their step. A rank whose process has ended (``os._exit``, a signal)
is named as gone by the ranks of its machine, within a second or two of a wait
(``processes.py``); the others name it at the timeout.

An uncaught exception on any rank, once ``init()`` ran, prints its traceback, tells the other
ranks and ends the whole job (:meth:`Group.end_job`: ``MPI_Abort`` on ``MPI_COMM_WORLD``,
which has the launcher end every rank, and this rank ends those of its machine itself if
they still run a second later). A script that ends after such a failure was caught (a
``RankError`` or ``DistributedTimeout`` seen, or this rank's own failure sent) ends the job
the same way rather than wait in ``MPI_Finalize`` for ranks that will never get there.

Under MPICH's ``mpiexec``, a rank whose process ends before ``MPI_Finalize`` makes the launcher
kill the other ranks at once, with no time to name it; and if it ended with exit code 0
(``os._exit(0)``), ``mpiexec`` reports the whole job as a success. Check that the script
reached its end (rank 0's last checkpoint, say), or launch with ``-disable-auto-cleanup``,
under which the other ranks stay to name it.

>>> import fluxml as fl
>>> g = fl.distributed.init()          # one process: rank 0 of 1
>>> fl.distributed.rank(), fl.distributed.world_size(), fl.distributed.is_main()
(0, 1, True)
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import os
import sys
import time
import traceback

from fluxml._checks import flag, real_in
from fluxml.distributed import processes

_HERE, _FAIL, _ROLL = 1, 2, 3  # tags on the control channel
_GROUP: Group | None = None


class DistributedError(RuntimeError):
    """Base class of the errors of ``fluxml.distributed``."""


class RankError(DistributedError):
    """Another rank failed; this one stops too. ``rank`` names the one that failed."""

    def __init__(self, message: str, rank: int):
        super().__init__(message)
        self.rank = rank


class DistributedTimeout(DistributedError):
    """A collective did not complete within the group's timeout."""


def on_every_rank(err: BaseException) -> BaseException:
    """Mark ``err`` as raised by every rank at the same point (a check on values all ranks
    share): no rank needs telling, and the job stays usable if every rank catches it."""
    err.on_every_rank = True  # type: ignore[attr-defined]
    return err


def _mpi(timeout: float | None = None):
    """mpi4py's ``MPI``, imported (which runs ``MPI_Init``) under a watchdog of ``timeout``
    seconds when given."""
    if timeout is not None and "mpi4py.MPI" not in sys.modules:
        return _wait_in_mpi_init_for_every_rank_to_start(timeout)
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError("fluxml.distributed needs mpi4py and an MPI library: pip install "
                          "'fluxml[distributed]' (mpi4py with the mpich wheel), then launch "
                          "with mpiexec -n 2 python train.py") from err
    return MPI


def _wait_in_mpi_init_for_every_rank_to_start(timeout: float):
    """``MPI_Init`` returns once every rank has called it: a rank that failed or exited
    before joining (an error before ``init()``) would leave the others in it forever, in C
    code holding the interpreter, so no Python timer can run. faulthandler's watchdog (a C
    thread) ends this process after ``timeout`` seconds instead, printing this function's
    name in its traceback; mpiexec then ends the job. (faulthandler has one such timer per
    process: one set before, pytest's ``faulthandler_timeout`` say, is replaced and not set
    again; ``init(timeout=...)`` bounds this wait too, so a timeout of seconds, chosen for
    hung steps, also ends ranks started that much apart.)"""
    try:  # (to the process's own stderr: a notebook's sys.stderr has no file descriptor)
        faulthandler.dump_traceback_later(timeout, exit=True, file=sys.__stderr__)
    except (AttributeError, ValueError, OSError):  # no stderr to write to: no watchdog
        return _mpi()
    try:
        return _mpi()
    finally:
        faulthandler.cancel_dump_traceback_later()


class Group:
    """The ranks of one training job: ``rank``, ``size``, ``comm`` (a private duplicate of
    ``MPI.COMM_WORLD`` for the data), ``sweep`` (another, for the gradient messages posted
    during a backward pass: MPI matches the collectives of a communicator by the order they
    are posted in, and a rank may post those at another point of its backward pass than the
    others, so they must not share a communicator with the collectives the backward pass
    itself runs, SyncBatchNorm's) and ``ctl`` (another, for failure notices and roll
    calls), with ``timeout`` seconds for any one wait. ``processes``: each rank's
    ``processes.whoami()``; ``neighbours``: the other ranks on this machine (where ``/proc``
    tells); ``broken``: why the job cannot go on, once a failure was seen here (else None)."""

    def __init__(self, comm, timeout: float):
        self.MPI = _mpi()
        self.comm = comm.Dup()
        self.sweep = comm.Dup()
        self.ctl = comm.Dup()
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = float(timeout)
        me = processes.whoami()
        self.processes = self.comm.allgather(me) if self.size > 1 else [me]
        self.neighbours = [r for r, p in enumerate(self.processes)
                           if r != self.rank and me[0] is not None and p[0] == me[0]]
        self.broken: str | None = None
        # the last step each rank is known to have reached; -1: not seen since the start (so
        # that a rank gone before the first step is named by a roll call at step 0)
        self.seen = [-1] * self.size
        self.step = self.seen[self.rank] = 0
        self.notified = False
        # what this rank's loss is multiplied by in the backward pass under way (set by
        # GradientAverager.share, which fl.train folds into the loss; 1 after each average):
        # SyncBatchNorm's backward weighs the ranks' cotangents by it
        self.share = 1.0
        self._sends: list = []

    # --- the control channel -------------------------------------------------------------

    def announce(self, step: int) -> None:
        """This rank reached the exchange of ``step`` (the averagers count the steps; several
        may follow in turn). Local: the other ranks learn it only if one calls the roll."""
        self.step = self.seen[self.rank] = step

    def poll(self) -> None:
        """Read what the other ranks sent: answer a roll call, note an answer, and raise
        ``RankError`` if one of them failed."""
        status = self.MPI.Status()
        while self.ctl.iprobe(source=self.MPI.ANY_SOURCE, tag=self.MPI.ANY_TAG, status=status):
            source, tag = status.Get_source(), status.Get_tag()
            msg = self.ctl.recv(source=source, tag=tag)
            if tag in (_HERE, _ROLL):
                self.seen[source] = max(self.seen[source], msg)
            if tag == _ROLL:
                self._send(self.step, source, _HERE)
            elif tag == _FAIL:
                self.notified = True  # the failure is known everywhere already
                self.broken = f"rank {source} failed ({msg})"
                raise RankError(f"fluxml.distributed: rank {source} of {self.size} failed "
                                f"({msg}); rank {self.rank} stops too", source)

    def _send(self, msg, dest: int, tag: int) -> None:
        self._sends = [r for r in self._sends if not r.Test()]
        self._sends.append(self.ctl.isend(msg, dest=dest, tag=tag))

    def roll_call(self, grace: float = 0.5) -> list[int]:
        """The ranks that have not reached this rank's step: ask every other rank, wait up to
        ``grace`` seconds for the answers (a rank waiting in ``wait`` answers at once; one that
        is stuck, busy or dead does not). Every rank has reached the step before this one:
        this rank's exchanges of that step completed, and an allreduce completes only when
        all ranks joined it."""
        for other in range(self.size):
            if other != self.rank:
                self.seen[other] = max(self.seen[other], self.step - 1)
                self._send(self.step, other, _ROLL)
        deadline = time.monotonic() + grace
        late = [r for r in range(self.size) if self.seen[r] < self.step]
        while late and time.monotonic() < deadline:
            time.sleep(1e-3)
            self.poll()
            late = [r for r in late if self.seen[r] < self.step]
        return late

    def notify_failure(self, err: BaseException) -> None:
        """Tell every other rank that this one failed with ``err`` (once; best effort)."""
        if self.notified or self.size == 1 or isinstance(err, RankError) \
                or getattr(err, "on_every_rank", False):
            return
        self.notified = True
        text = f"{type(err).__name__}: {err}"[:2000]
        self.broken = self.broken or f"this rank failed ({text})"
        try:
            reqs = [self.ctl.isend(text, dest=r, tag=_FAIL)
                    for r in range(self.size) if r != self.rank]
            deadline = time.monotonic() + 0.5
            while not self.MPI.Request.Testall(reqs) and time.monotonic() < deadline:
                time.sleep(1e-3)
        except Exception:  # noqa: BLE001 - we are already failing; the original error wins
            pass

    # --- waiting ---------------------------------------------------------------------------

    def at_step(self, what: str) -> str:
        """``what`` (a name for an exchange, in a message) with this rank's step, once."""
        suffix = f" at step {self.step}"
        return what if what.endswith(suffix) else what + suffix

    def ended(self) -> list[int]:
        """The ranks of this machine whose process has ended (``processes.ended``)."""
        return [r for r in self.neighbours if processes.ended(self.processes[r])]

    def _gone(self, ranks: list[int], what: str) -> RankError:
        """The error naming ``ranks``, whose processes ended while this rank waited."""
        for r in ranks:  # (every rank reached the step before this one: see roll_call)
            self.seen[r] = max(self.seen[r], self.step - 1)
        who = ", ".join(f"rank {r} (process {self.processes[r][1]}, "
                        f"{_last_seen(self.seen[r])})" for r in ranks)
        self.broken = f"{who} ended"
        return RankError(f"fluxml.distributed: rank {self.rank} of {self.size} waited for "
                         f"{self.at_step(what)}; gone: {who}: its process on this machine "
                         f"ended (exited or was killed) without a word; rank {self.rank} "
                         f"stops too", ranks[0])

    def wait(self, requests: list, what: str) -> None:
        """Wait for ``requests`` (MPI requests), as ``wait_until`` waits."""
        Testall = self.MPI.Request.Testall
        if not Testall(requests):
            self.wait_until(lambda: Testall(requests), what)

    def wait_until(self, done, what: str) -> None:
        """Wait until ``done()`` (it tests what the other ranks did: MPI requests, or flags
        they set in shared memory); meanwhile read failure notices, and give up after
        ``timeout`` seconds naming the ranks that have not reached this step. Past the first
        second, twice a second: a rank of this machine whose process ended is named at
        once."""
        start = time.monotonic()
        pause, look = 0.0, 1.0
        while not done():
            self.poll()
            elapsed = time.monotonic() - start
            if elapsed > look and self.neighbours:
                look = elapsed + 0.5
                ended = self.ended()
                if ended and not done():  # (what they did before may complete it)
                    raise self._gone(ended, what)
            if elapsed > self.timeout:
                late = self.roll_call()
                gone = set(self.ended())  # (one look at /proc for all of them)
                ended = [r for r in late if r in gone]
                if ended:
                    raise self._gone(ended, what)
                who = (", ".join(f"rank {r} ({_last_seen(self.seen[r])})" for r in late)
                       if late else "every rank answered the roll call")
                self.broken = f"a timeout: not there: {who}"
                raise DistributedTimeout(
                    f"fluxml.distributed: rank {self.rank} waited {self.timeout:g} s for "
                    f"{self.at_step(what)}; not there: {who}. A rank may be stuck or "
                    f"dead; if a step legitimately takes longer, pass a larger timeout to "
                    f"fl.distributed.init(timeout=...)")
            # The other ranks are usually microseconds away: spin (as MPI's own Wait does) for
            # 2 ms, then yield the core to any process that wants it (sleeping costs a timer
            # tick, and a loaded machine may not wake the sleeper for milliseconds); after
            # 50 ms (a rank saving a checkpoint, a slow batch) sleep, so a long wait does not
            # burn a core.
            if elapsed < 2e-3:
                continue
            if elapsed < 0.05:
                os.sched_yield()
            else:
                pause = min(1e-3, pause + 1e-4)
                time.sleep(pause)

    def end_job(self, code: int = 1):
        """End every rank of the job now, this one without ``MPI_Finalize``; never returns.
        ``MPI_Abort`` on ``MPI_COMM_WORLD`` has the launcher end the job (MPICH tells
        ``mpiexec``, which ends it even under ``-disable-auto-cleanup``); the ranks of this
        machine still running a second later are killed here, and this process ends with
        ``os._exit``. First the output is let out: ``mpiexec`` ends at the abort, dropping
        what the ranks wrote that it has not passed on yet (the error messages).

        (``MPI_Abort`` on the group's own communicators, as before, does not tell the launcher
        under MPICH: it sends each other rank an abort message and waits until that is
        delivered, which over a transport that needs the receiver to take part (UCX over TCP
        always, its shared-memory ones now and then) never happens for a rank asleep or
        waiting in ``MPI_Finalize``: the aborting rank spun in ``MPI_Abort`` and the job,
        whose launcher learns of a failure only from a process's end, never ended.)"""
        try:
            _let_output_out()
            with contextlib.suppress(Exception):  # (MPI finalized, say: the kill still runs)
                self.MPI.COMM_WORLD.Abort(code)
            processes.kill([self.processes[r] for r in self.neighbours], grace=1.0)
        finally:
            os._exit(code)


def _let_output_out(most: float = 1.0, others: float = 0.25) -> None:
    """Flush this process's output and wait (up to ``most`` seconds) until the launcher has
    read it from the pipes, then ``others`` seconds more for it to pass it on and for the
    other ranks to write theirs (a failure seen on every rank at once is printed by each)."""
    import fcntl
    import struct
    import termios

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    deadline = time.monotonic() + most
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline and struct.unpack(
                    "i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0] > 0:
                time.sleep(0.005)
    time.sleep(others)


def _last_seen(step: int) -> str:
    return f"last seen at step {step}" if step >= 0 else "not seen since the start"


def init(timeout: float | None = None, gpu: bool = True) -> Group:
    """Join the job ``mpiexec`` started: rank and world size from ``MPI.COMM_WORLD``; with
    ``gpu`` and CuPy seeing GPUs, each rank on a node takes its own (local rank modulo the
    count). ``timeout``: seconds any one wait may take before ``DistributedTimeout`` (default
    300, or ``$FLUXML_DIST_TIMEOUT``). Calling it again returns the same group (a
    ``timeout`` given replaces the old). A single process without ``mpiexec`` is rank 0 of 1.

    >>> import fluxml as fl
    >>> fl.distributed.init().size
    1
    """
    global _GROUP
    if timeout is not None:  # (True passed as 1 s, inf failed in time arithmetic)
        real_in("init", "timeout (seconds, or None)", timeout, 0, low_open=True)
        timeout = float(timeout)
    flag("init", "gpu", gpu)  # ('no' took a GPU)
    if _GROUP is None:
        default = float(os.environ.get("FLUXML_DIST_TIMEOUT", "300"))
        MPI = _mpi(default if timeout is None else timeout)
        _GROUP = Group(MPI.COMM_WORLD, default if timeout is None else timeout)
        if gpu:
            _pick_gpu(_GROUP)
        if _GROUP.size > 1:
            _install_excepthook(_GROUP)
            atexit.register(_end_a_broken_job, _GROUP)
    elif timeout is not None:
        _GROUP.timeout = float(timeout)
    return _GROUP


def group() -> Group:
    """The group ``init()`` made (calling ``init()`` first if needed)."""
    return _GROUP if _GROUP is not None else init()


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1``."""
    return group().rank


def world_size() -> int:
    """The number of ranks in the job."""
    return group().size


def is_main() -> bool:
    """True on rank 0: the rank that prints progress and saves checkpoints."""
    return group().rank == 0


def _pick_gpu(g: Group) -> None:
    """One GPU per rank where CuPy finds GPUs; nothing (and no error) where it does not."""
    try:
        import cupy
    except ImportError:
        return
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - CuPy installed but no driver or device
        return
    if count:
        local = g.comm.Split_type(g.MPI.COMM_TYPE_SHARED).Get_rank()
        cupy.cuda.Device(local % count).use()


def _install_excepthook(g: Group) -> None:
    """An uncaught exception on any rank: print it (naming the rank), tell the others, then
    end the whole job: without this, the other ranks would wait in a collective forever."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        sys.stderr.write(f"fluxml.distributed: rank {g.rank} of {g.size}: uncaught "
                         f"{kind.__name__}; stopping every rank\n")
        try:
            previous(kind, value, tb)
        except Exception:  # noqa: BLE001
            traceback.print_exception(kind, value, tb)
        sys.stderr.flush()
        if not isinstance(value, RankError) and not getattr(value, "on_every_rank", False):
            g.notify_failure(value)  # a no-op if fl.train already sent it
            time.sleep(0.5)  # let the others print their RankError before the abort
        g.end_job(1)

    sys.excepthook = hook


def _end_a_broken_job(g: Group) -> None:
    """At the script's end (before mpi4py's ``MPI_Finalize``): if a failure was seen here
    and caught, end the job rather than wait in ``MPI_Finalize`` for ranks that failed or
    are stuck (forever: it has no timeout)."""
    if g.broken is not None:
        sys.stderr.write(f"fluxml.distributed: rank {g.rank} of {g.size}: the script ended "
                         f"after {g.broken}; ending the job rather than wait for the other "
                         f"ranks in MPI_Finalize\n")
        g.end_job(1)
