"""Real-time scheduling for the loop that decides (frame -> relay).

The Pi that runs the gate also runs its kiosk browser, the uplink, the outbox and whatever a
technician starts. Under the ordinary scheduler a decision waits whenever those hold the CPU: the
loop wakes for a frame and is not run for milliseconds, and the frame -> relay bound (2 ms at p99)
is lost to other programs rather than to the sentry's own work. At SCHED_FIFO the loop runs as
soon as its frame is there, ahead of every ordinary task; it blocks on the camera between frames,
and the kernel's real-time throttling still keeps a share of each core for the rest.

Only the calling thread is raised, never the process: the uplink, outbox and page threads stay
ordinary, and with SCHED_RESET_ON_FORK a thread the loop starts does not inherit the priority.
Not being allowed (no `LimitRTPRIO=` in the service, a system call filter, a container) is logged
once and the loop runs on at ordinary priority: the gate works either way, only less promptly.

Inside the process the loop still shares the interpreter lock with those threads, and priority
does not help there: a signed command checked on the link's thread holds the lock for stretches
of pure Python, and a thread that wants it back waits a whole switch interval (5 ms by default)
before the holder is asked to let go; a full garbage collection holds it for 15-30 ms with the
libraries' objects loaded. `favour_the_loop` shortens the interval to 0.5 ms and freezes what
start-up made (`gc.freeze`: those objects live as long as the process, and a full collection
then looks only at what came after), while the daemon decides. Measured in the soak (30 fps, a
signed command every second): frames that waited over 3 ms went from 71 to 10 in 9,000.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

#: The interpreter's switch interval while the loop decides: how long the loop can be kept waiting
#: for the interpreter lock by a thread running Python (C calls that hold it are not cut short).
SWITCH_INTERVAL_S = 0.0005


def raise_this_thread(priority: int) -> int:
    """Put the calling thread under SCHED_FIFO at `priority`; return the priority it now runs at
    (0: ordinary, because 0 was asked for or the system refused)."""
    if priority <= 0:
        return 0
    policy = getattr(os, "SCHED_FIFO", None)
    if policy is None or not hasattr(os, "sched_setscheduler"):
        log.warning(
            "real-time priority %d not available on this system: the loop runs at ordinary priority", priority
        )
        return 0
    try:
        wanted = min(priority, os.sched_get_priority_max(policy), _allowed())
        os.sched_setscheduler(0, policy | getattr(os, "SCHED_RESET_ON_FORK", 0), os.sched_param(wanted))
    except OSError as exc:
        log.warning(
            "could not raise the deciding loop to real-time priority %d (%s): it runs at ordinary "
            "priority, and other programs can delay decisions (the service unit's LimitRTPRIO= "
            "and RestrictRealtime= allow it)",
            priority,
            os.strerror(exc.errno) if exc.errno else exc,
        )
        return 0
    log.info("deciding loop at real-time priority %d (SCHED_FIFO)", wanted)
    return wanted


@contextmanager
def realtime(priority: int) -> Iterator[int]:
    """The calling thread at real-time `priority` for the block (yields what it got), then back to
    the policy it had: a loop run on a caller's thread (a test's, a tool's) leaves it as it was."""
    try:
        before = (os.sched_getscheduler(0), os.sched_getparam(0))
    except (AttributeError, OSError):
        before = None
    got = raise_this_thread(priority)
    try:
        yield got
    finally:
        if got and before is not None:
            try:
                os.sched_setscheduler(0, before[0], before[1])
            except OSError as exc:
                log.warning("could not give the thread back its scheduling policy: %s", exc)


def _allowed() -> int:
    """The highest priority this process may ask for without privilege (RLIMIT_RTPRIO, what the
    unit's LimitRTPRIO= sets), or no bound when it holds CAP_SYS_NICE (root's, here read as
    euid 0: the sentry's unit grants no capabilities)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    if os.geteuid() == 0 or soft == resource.RLIM_INFINITY:
        return 99
    return max(1, int(soft))


@contextmanager
def favour_the_loop(enabled: bool) -> Iterator[None]:
    """For the block: a short switch interval and start-up's objects frozen out of the collector's
    sight (see the module docstring); then both as they were, so that a daemon run inside a
    longer-lived process (a test, a tool) leaves it as it found it."""
    if not enabled:
        yield
        return
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, SWITCH_INTERVAL_S))
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        sys.setswitchinterval(before)


def current_priority() -> int:
    """The calling thread's real-time priority (0 under an ordinary policy)."""
    try:
        return int(os.sched_getparam(0).sched_priority)
    except (AttributeError, OSError):
        return 0
