"""Running git for the hub: one runner, off the loop, with a clean environment and a timeout.

Every git command the hub runs (worktrees, repository detection) goes through ``git()``: an
asyncio subprocess in its own process group (a timeout kills hooks and helpers too), with
inherited ``GIT_DIR``-style variables dropped, ``GIT_TERMINAL_PROMPT=0``, ``LC_ALL=C`` (parseable
messages) and no optional locks. Also: parsing ``git worktree list`` and wording "not a
repository" failures. Used by the ``worktree`` and ``hub`` primitives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GIT_CHANGE_TIMEOUT_S",
    "GIT_TIMEOUT_S",
    "GitResult",
    "git",
    "repo_reason",
    "worktree_entries",
]

# Queries finish fast; a checkout of a large repository, its hooks (git-lfs...) or a stash of
# many untracked files can take minutes.
GIT_TIMEOUT_S = 30.0
GIT_CHANGE_TIMEOUT_S = 600.0

# Git variables that describe who and how, not where: everything else named GIT_* (GIT_DIR,
# GIT_WORK_TREE, GIT_INDEX_FILE... as set when the hub is started from a git hook) would point
# our commands at the wrong repository.
_KEEP_GIT_ENV = frozenset(
    {
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSH_VARIANT",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_CONFIG_NOSYSTEM",
    }
)


# Running git ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GitResult:
    """One git run: exit code (None when it could not run or timed out), stdout, stderr."""

    code: int | None
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def reason(self) -> str:
        """Git's own explanation: its last ``fatal:``/``error:`` line, else its stderr."""
        lines = [line.strip() for line in self.err.splitlines() if line.strip()]
        for line in reversed(lines):
            for prefix in ("fatal: ", "error: "):
                if line.startswith(prefix):
                    return line[len(prefix) :]
        if lines:
            return lines[-1]
        return f"git exited with code {self.code}"


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _KEEP_GIT_ENV}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",  # `git status` must not take the index lock an agent needs
        GIT_PAGER="cat",
        GIT_EDITOR=":",
        LC_ALL="C",
        LANGUAGE="C",
    )
    return env


class _Run:
    """One git process, shared between the task that runs it and the caller that may stop it."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.stopped = False

    def stop(self) -> None:
        """Kills git and its children (hooks, ssh, git-lfs hold its pipes open), now or as
        soon as it has started."""
        self.stopped = True
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


async def _run_git(run: _Run, cwd: str, args: tuple[str, ...]) -> GitResult:
    try:
        run.proc = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            cwd,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_git_env(),
            start_new_session=True,  # its own process group, so stop() reaches its children
        )
    except OSError as e:
        return GitResult(None, "", f"cannot run git: {e.strerror or e}")
    if run.stopped:
        run.stop()
    out, err = await run.proc.communicate()
    return GitResult(
        run.proc.returncode,
        out.decode("utf-8", "surrogateescape"),
        err.decode("utf-8", "surrogateescape"),
    )


async def git(
    cwd: str, *args: str, limit_s: float = GIT_TIMEOUT_S, changes: bool = False
) -> GitResult:
    """Runs ``git -C cwd <args>`` as a subprocess (never on the loop) and collects its output.

    Args:
        cwd: the repository or worktree to run in.
        args: git's arguments.
        limit_s: seconds before git (and its children) are killed.
        changes: the command changes the repository. When the calling task is cancelled
            (its plugin unloads), such a command is left to finish (within `limit_s`) rather
            than killed halfway through a checkout; a query is killed at once.

    Returns:
        A GitResult; ``code`` is None when git could not start or timed out (``err`` says so).
    """
    run = _Run()
    # A task of its own, so that cancelling the caller, even while git is being started,
    # never leaves the process unaccounted for.
    task = asyncio.ensure_future(_run_git(run, cwd, args))
    try:
        async with asyncio.timeout(limit_s):
            return await asyncio.shield(task)
    except TimeoutError:
        run.stop()
        await asyncio.wait({task}, timeout=5)
        return GitResult(None, "", f"git {_command(args)} did not finish within {limit_s:g} s")
    except asyncio.CancelledError:
        if changes:
            await asyncio.wait({task}, timeout=limit_s)
        run.stop()
        await asyncio.wait({task}, timeout=5)
        raise
    finally:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: a failure here is reported by the caller's error


def _command(args: tuple[str, ...]) -> str:
    """The git subcommand in `args` (global options such as ``-c k=v`` skipped)."""
    it = iter(args)
    for arg in it:
        if arg == "-c":
            next(it, None)
        elif not arg.startswith("-"):
            return arg
    return "(no command)"


_porcelain_z: bool | None = None  # whether this git knows `worktree list --porcelain -z` (2.36)


def _parse_worktrees(text: str, sep: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for record in text.split(sep + sep):
        fields = [f for f in record.split(sep) if f]
        if not fields or not fields[0].startswith("worktree "):
            continue
        entry: dict[str, Any] = {"path": fields[0][len("worktree ") :], "is_main": not entries}
        for f in fields[1:]:
            key, _, value = f.partition(" ")
            if key == "HEAD":
                entry["head"] = value
            elif key == "branch":
                entry["branch"] = value.removeprefix("refs/heads/")
            elif key in ("detached", "bare"):
                entry[key] = True
            elif key in ("locked", "prunable"):
                entry[key] = True
                if value:
                    entry[f"{key}_reason"] = value
        entries.append(entry)
    return entries


async def worktree_entries(repo: str) -> list[dict[str, Any]] | str:
    """Every worktree of `repo`, main first, parsed from ``git worktree list --porcelain``.

    Returns:
        The entries ``{path, branch?, head?, is_main, detached?, bare?, locked?,
        locked_reason?, prunable?, prunable_reason?}``, or git's reason as a string.
    """
    global _porcelain_z
    if _porcelain_z is not False:
        res = await git(repo, "worktree", "list", "--porcelain", "-z")
        if res.ok:
            _porcelain_z = True
            return _parse_worktrees(res.out, "\0")
        if res.code != 129:  # 129: usage error, an older git without -z
            return repo_reason(repo, res)
        _porcelain_z = False
    res = await git(repo, "worktree", "list", "--porcelain")
    return _parse_worktrees(res.out, "\n") if res.ok else repo_reason(repo, res)


def repo_reason(repo: str, res: GitResult) -> str:
    """Why git failed in `repo`, with "not a repository" and "missing" said plainly."""
    reason = res.reason()
    if "not a git repository" in reason:
        return f"{repo} is not a git repository"
    if reason.startswith("cannot change to"):
        return f"{repo} does not exist"
    return reason


# Small helpers ---------------------------------------------------------------------------------
