"""Starting a hub from the command line: resolve the repo, lock it, run the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

from botster.base.config import Config
from botster.base.identity import find_repo_root, hub_id_for
from botster.base.paths import Paths, ensure_private_dir
from botster.hub.daemon import Hub

__all__ = ["run_hub"]


def _raise_fd_limit() -> None:
    """Lifts the soft limit on open files to the hard one: every client and session costs a
    descriptor, and ``socket_max_clients`` should be what refuses clients, not EMFILE."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 16
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# The hub's loop thread asks for this CPU slice (the kernel's minimum, 0.1 ms): see below.
HUB_SLICE_NS = 100_000
# sched_setattr(2) by machine (glibc has no wrapper); elsewhere the hub does without.
_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274, "riscv64": 274, "armv7l": 380, "i686": 351}
_SCHED_FLAG_RESET_ON_FORK = 0x01


def _ask_for_prompt_wakeups() -> None:
    """Asks Linux for a short CPU slice (``HUB_SLICE_NS``) for the hub's loop thread.

    Why: the hub routes every agent's output and every key, in short bursts. Under EEVDF
    (Linux 6.6+; custom slices since 6.12, through ``sched_attr.sched_runtime``, no privilege
    needed) a task with a shorter slice gets an earlier deadline when it wakes and preempts the
    running one, instead of waiting behind the agents' programs and session processes; its CPU
    share is unchanged (that is still its weight's). Measured (issue 11): a socket client's
    `yes` rose from 0.72x to ~1.0x a raw PTY reader, and 20 flooding agents still left the
    hub's timers with a p99 jitter of a few ms. With ``SCHED_FLAG_RESET_ON_FORK`` the hub's
    other threads and children (sessions, git) start with the default slice. Where this is
    refused or unknown, nothing changes.
    """
    import ctypes

    number = _SCHED_SETATTR.get(os.uname().machine)
    if not sys.platform.startswith("linux") or number is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        policy = os.sched_getscheduler(0)
        if policy not in (os.SCHED_OTHER, os.SCHED_BATCH):
            return  # real-time or idle: someone chose that; leave it

        class _SchedAttr(ctypes.Structure):  # SCHED_ATTR_SIZE_VER0
            _fields_ = [
                ("size", ctypes.c_uint32),
                ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64),
                ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32),
                ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64),
                ("sched_period", ctypes.c_uint64),
            ]

        attr = _SchedAttr(
            size=ctypes.sizeof(_SchedAttr),
            sched_policy=policy,
            sched_flags=_SCHED_FLAG_RESET_ON_FORK,
            sched_nice=os.getpriority(os.PRIO_PROCESS, 0),
            sched_runtime=HUB_SLICE_NS,
        )
        ctypes.CDLL(None, use_errno=True).syscall(number, 0, ctypes.byref(attr), 0)


def run_hub(start: Path) -> int:
    """Runs a hub for the repo containing `start` until it quits. Returns the exit code.

    Raises:
        HubError: no repo, a broken config.json, or a hub already running for this repo.
    """
    _raise_fd_limit()
    _ask_for_prompt_wakeups()
    repo = find_repo_root(start)
    paths = Paths.for_repo(repo)
    ensure_private_dir(paths.home)  # 0700: what the hub keeps there is the user's alone
    ensure_private_dir(paths.runtime)
    config = Config.load_blocking(paths.config_file)
    hub = Hub(paths, config, hub_id_for(repo))
    hub.lock.acquire()
    try:
        import uvloop  # optional speed-up
    except ImportError:
        return asyncio.run(hub.run())
    return uvloop.run(hub.run())
