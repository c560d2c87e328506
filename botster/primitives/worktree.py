"""The ``worktree`` primitive: one git worktree per agent branch, made and removed safely.

Owns the seven ``worktree`` functions of the spec. Git runs through ``botster.base.git`` (off
the loop, clean environment, timeouts); file work runs on the hub's I/O pool. Leaves agent
sessions to the session layer and events to ``events``.

Where worktrees live: ``<base>/<repo-name>/<branch>``, where ``<base>`` is
``$BOTSTER_WORKTREE_BASE`` (default ``~/botster-sessions``) and ``<repo-name>`` is the name of
the repository's main checkout directory. A branch's slashes stay directories
(``feature/login`` -> ``.../feature/login``): git refuses branch names with empty, ``.`` or
``..`` components, and cannot hold both ``a`` and ``a/b`` as branches, so two branches never
map to one directory. A path that is taken anyway (a branch differing only in case on a
case-insensitive disk, a checkout of another repository with the same name) fails with a
clear reason: nothing at a target path is ever removed or overwritten.

Safety of ``worktree.delete``: it refuses while the worktree holds uncommitted changes
(untracked, non-ignored files included) or its branch holds commits found on no other branch
and no remote-tracking branch; ``{force = true}`` quarantines instead (see ``delete``).
Ignored files (build output, copied ``.env`` files) are deleted with the worktree.

Errors read ``worktree.<function>: <object>: <reason>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat as _stat
from itertools import count
from typing import Any, NotRequired, Required, TypedDict

from botster.base.errors import ArgumentError
from botster.base.git import (
    GIT_CHANGE_TIMEOUT_S,
    git,
    repo_reason,
    worktree_entries,
)
from botster.base.paths import worktree_base
from botster.lua.api import lua_api
from botster.primitives.context import HubContext

__all__ = ["LUA"]

log = logging.getLogger("worktree")

Fail = tuple[None, str]

# How many file names or commits an error message lists before "and N more".
_SHOWN = 5


def _realpaths_blocking(paths: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(os.path.realpath(p) for p in paths)


async def _realpath(hub: HubContext, path: str) -> str:
    return (await hub.run_blocking(_realpaths_blocking, (path,)))[0]


async def _entry_at(
    hub: HubContext, entries: list[dict[str, Any]], path: str
) -> dict[str, Any] | None:
    """The worktree entry whose directory is `path` (symlinks resolved on both sides)."""
    paths = (path, *(e["path"] for e in entries))
    real, *known = await hub.run_blocking(_realpaths_blocking, paths)
    return next((e for e, p in zip(entries, known, strict=True) if p == real), None)


def _check_abs(path: str, arg: str) -> str:
    if not os.path.isabs(path):
        raise ArgumentError(f"{arg}: expected an absolute path, got {path!r}")
    return os.path.normpath(path)


def _check_name(value: str, arg: str) -> str:
    if not value:
        raise ArgumentError(f"{arg}: expected a non-empty string, got an empty string")
    if value.startswith("-"):
        raise ArgumentError(f"{arg}: must not start with '-', got {value!r}")
    return value


def _listing(items: list[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {total - _SHOWN} more" if total > _SHOWN else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


async def _valid_branch(repo: str, branch: str) -> str | None:
    """None when `branch` is a valid branch name, else why not."""
    # "@" passes check-ref-format, but git reads it as HEAD: a refs/heads/@ is a trap.
    if not branch.startswith("-") and branch != "@":
        res = await git(repo, "check-ref-format", "--branch", branch)
        # --branch expands @{-1} to the previous branch: the name must come back unchanged.
        if res.ok and res.out.rstrip("\n") == branch:
            return None
    return f"{branch!r} is not a valid branch name (see git check-ref-format)"


async def _has_ref(repo: str, ref: str) -> bool:
    return (await git(repo, "show-ref", "--verify", "--quiet", ref)).ok


# Serialises the changes this hub makes to its repository's worktrees: two requests for one
# branch must see each other's result (the second reuses the first's worktree).
class _State:
    def __init__(self, hub: HubContext) -> None:
        self.change_lock = asyncio.Lock()


def _lock(hub: HubContext) -> asyncio.Lock:
    return hub.state(_State).change_lock


# find / list ---------------------------------------------------------------------------------


@lua_api
async def check_branch(hub: HubContext, branch: str) -> bool | Fail:
    """worktree.check_branch(branch) -> true | nil, err

    Whether `branch` may name a branch: git's rules (``git check-ref-format --branch``), no
    leading ``-``, not ``@``. ``create_async`` applies the same check; call this first to
    refuse a bad name before starting anything.

    ```lua
    local ok, err = worktree.check_branch(name)
    if not ok then return nil, err end
    ```
    """
    why = await _valid_branch(str(hub.paths.repo), branch)
    if why is not None:
        return None, f"worktree.check_branch: {why}"
    return True


@lua_api
async def find(hub: HubContext, branch: str) -> str | None | Fail:
    """worktree.find(branch) -> path | nil[, err]

    The directory where `branch` (a short name such as ``"feature/login"``) is checked out:
    a worktree of the hub's repository, or the repository itself when the main checkout has
    that branch. Returns nil when no worktree has it (worktrees whose directory has gone
    missing do not count), and nil, err when git cannot answer (not a repository).
    Raises when `branch` is not a string.

    ```lua
    local path = worktree.find("feature/login")
    if path then log.info("already checked out at " .. path) end
    ```
    """
    repo = str(hub.paths.repo)
    entries = await worktree_entries(repo)
    if isinstance(entries, str):
        return None, f"worktree.find: {branch}: {entries}"
    for entry in entries:
        if entry.get("branch") == branch and not entry.get("prunable"):
            return entry["path"]
    return None


@lua_api
async def list(hub: HubContext) -> list[dict[str, Any]] | Fail:  # noqa: A001 - the spec's name
    """worktree.list() -> {{path, branch, head, is_main, ...}, ...} | nil, err

    Every worktree of the hub's repository, the main checkout first, read from
    ``git worktree list --porcelain`` on each call (never a stale cache). Each entry:

    * `path`: the worktree's directory.
    * `branch`: the short branch name; absent when the worktree has a detached HEAD
      (then `detached = true`).
    * `head`: the checked-out commit (40 hex digits); absent before the first commit.
    * `is_main`: true for the repository's main checkout, which `worktree.delete` refuses.
    * `locked`, `locked_reason`: present when someone ran ``git worktree lock``.
    * `prunable`, `prunable_reason`: present when the directory has gone missing; the next
      `worktree.create_async` or successful `worktree.delete` prunes such entries
      (unless locked).

    Returns nil, err when the hub's repository is not (or no longer) a git repository.

    ```lua
    for _, wt in ipairs(worktree.list()) do
      log.info(wt.path .. " " .. (wt.branch or "(detached)"))
    end
    ```
    """
    repo = str(hub.paths.repo)
    entries = await worktree_entries(repo)
    if isinstance(entries, str):
        return None, f"worktree.list: {entries}"
    return entries


# create_async --------------------------------------------------------------------------------


class CreateOptions(TypedDict, total=False):
    branch: Required[str]
    base: NotRequired[str]
    path: NotRequired[str]
    prompt: NotRequired[str]
    issue_number: NotRequired[int]
    metadata: NotRequired[Any]


_request_ids = count(1)


class _Refused(Exception):
    """A create request that cannot be carried out; the message is the reason."""


@lua_api
def create_async(hub: HubContext, opts: CreateOptions) -> str:
    """worktree.create_async(opts) -> request_id

    Starts making (or finding) the worktree for a branch and returns at once. The result
    arrives as an event, in a background task owned by the calling plugin (unloading the
    plugin stops it: a git command already running is left to finish, and no event follows).

    * `opts.branch`: the branch (required); slashes allowed. Checked with
      ``git check-ref-format --branch``.
    * `opts.base`: the branch, tag or commit a NEW branch starts from (default: the commit
      the hub's repository has checked out). Ignored when the branch already exists.
    * `opts.path`: an absolute directory for the worktree
      (default: ``<base dir>/<repo-name>/<branch>``, see the module notes).
    * `opts.prompt`, `opts.issue_number`, `opts.metadata`: echoed back in the event
      (`metadata` may be any table).

    In order: a worktree that already has the branch at the target path is reused
    (`created = false`); an existing local branch is checked out into a new worktree; a
    branch that exists only as ``origin/<branch>`` (and no `opts.base`) is created tracking
    it; any other branch is created from `opts.base` without an upstream. The request fails
    when the name is invalid, the branch is checked out somewhere else (the main checkout or
    another path: the reason names it), the target path exists and is not that branch's
    worktree (an empty directory is fine; nothing is ever removed), `opts.base` does not
    resolve, or the repository is missing or has no commits. Requests run one at a time, so
    two requests for one branch yield one worktree.

    Events (listen with ``events.on``):
    * ``worktree_created`` ``{request_id, branch, path, created, branch_created, base?,
      prompt?, issue_number?, metadata?}``: `created` is false for a reused worktree,
      `branch_created` true when the branch was made now, `base` the ref it was made from.
    * ``worktree_create_failed`` ``{request_id, branch, error, metadata?}``, `error` shaped
      ``"worktree.create_async: <branch>: <reason>"``.

    Raises on a missing or empty `branch`, a relative `opts.path`, a wrong option type or an
    unknown option key.

    ```lua
    local id = worktree.create_async({branch = "fix/login", prompt = "Fix the login bug"})
    events.on("worktree_created", function(e)
      if e.request_id == id then log.info("ready at " .. e.path) end
    end)
    ```
    """
    branch = _check_name(opts["branch"], "opts.branch")
    base = _check_name(opts["base"], "opts.base") if "base" in opts else None
    path = _check_abs(opts["path"], "opts.path") if "path" in opts else None
    owner = hub.host.current_owner()
    request_id = f"worktree_{next(_request_ids)}"
    echo = {k: opts[k] for k in ("prompt", "issue_number", "metadata") if k in opts}

    async def run() -> None:
        try:
            async with _lock(hub):
                made = await _create(hub, str(hub.paths.repo), branch, base, path)
        except _Refused as e:
            reason = str(e)
        except Exception as e:  # a bug here must still answer the request
            log.exception("worktree.create_async %s (%s) failed", request_id, branch)
            reason = f"internal error: {e!r}"
        else:
            event = {"request_id": request_id, "branch": branch, **made, **echo}
            hub.emit("worktree_created", event)
            return
        finally:
            hub.owners.discard(owner, request_id)
        failed = {
            "request_id": request_id,
            "branch": branch,
            "error": f"worktree.create_async: {branch}: {reason}",
            "metadata": echo.get("metadata"),
        }
        hub.emit("worktree_create_failed", failed)

    task = hub.spawn(run(), name=f"worktree.create_async {request_id}", owner=owner)
    hub.owners.add(owner, request_id, task.cancel)
    return request_id


def _inspect_target_blocking(path: str) -> str:
    """What is at `path`: "missing", "empty" (an empty directory) or "taken"."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    if _stat.S_ISDIR(st.st_mode) and not os.listdir(path):
        return "empty"
    return "taken"


async def _create(
    hub: HubContext, repo: str, branch: str, base: str | None, path: str | None
) -> dict[str, Any]:
    """Makes or finds the worktree; returns the event fields, raises _Refused with a reason."""
    pruned = await git(repo, "worktree", "prune")
    if not pruned.ok:
        raise _Refused(repo_reason(repo, pruned))
    invalid = await _valid_branch(repo, branch)
    if invalid:
        raise _Refused(invalid)
    entries = await worktree_entries(repo)
    if isinstance(entries, str):
        raise _Refused(entries)
    main = entries[0]["path"]
    target = path or os.path.join(worktree_base(), os.path.basename(main), branch)
    real_target = await _realpath(hub, target)

    holder = next((e for e in entries if e.get("branch") == branch), None)
    if holder is not None and holder.get("prunable"):  # left by the prune: it is locked
        raise _Refused(
            f"the worktree of branch {branch} at {holder['path']} is missing but locked "
            f"({holder.get('locked_reason', 'no reason given')}); "
            "reconnect it or run git worktree unlock"
        )
    if holder is not None:
        if await _realpath(hub, holder["path"]) == real_target:
            return {"path": holder["path"], "created": False, "branch_created": False}
        where = "the main checkout of the repository" if holder["is_main"] else "a worktree"
        hint = (
            "switch the main checkout to another branch or choose another branch"
            if holder["is_main"]
            else f"pass opts.path = {holder['path']!r} to use that worktree"
        )
        raise _Refused(
            f"branch {branch} is already checked out at {holder['path']} ({where}); {hint}"
        )

    occupant = await _entry_at(hub, entries, target)
    if occupant is not None:
        what = f"branch {occupant['branch']}" if "branch" in occupant else "a detached HEAD"
        raise _Refused(f"{target} is already the worktree of {what}")
    state = await hub.run_blocking(_inspect_target_blocking, target)
    if state == "taken":
        raise _Refused(
            f"{target} already exists and is not a worktree of {branch}; "
            "nothing there is removed: move it away or pass another opts.path"
        )

    if await _has_ref(repo, f"refs/heads/{branch}"):
        add = ["worktree", "add", "--", target, branch]
        made: dict[str, Any] = {"branch_created": False}
    elif base is None and await _has_ref(repo, f"refs/remotes/origin/{branch}"):
        add = ["worktree", "add", "--track", "-b", branch, "--", target, f"origin/{branch}"]
        made = {"branch_created": True, "base": f"origin/{branch}"}
    else:
        start = base or await _head_name(repo)
        if not (await git(repo, "rev-parse", "--verify", "--quiet", f"{start}^{{commit}}")).ok:
            raise _Refused(f"base {start!r} is not a branch, tag or commit of {main}")
        add = ["worktree", "add", "--no-track", "-b", branch, "--", target, start]
        made = {"branch_created": True, "base": start}
    res = await git(repo, *add, limit_s=GIT_CHANGE_TIMEOUT_S, changes=True)
    if not res.ok:
        raise _Refused(f"git worktree add failed: {res.reason()}")
    entries = await worktree_entries(repo)
    registered = target
    if not isinstance(entries, str):
        registered = next((e["path"] for e in entries if e.get("branch") == branch), target)
    return {"path": registered, "created": True, **made}


async def _head_name(repo: str) -> str:
    """The branch the repository has checked out, else its commit; refuses an empty repo."""
    if not (await git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")).ok:
        raise _Refused(f"{repo} has no commits yet; commit something first or pass opts.base")
    res = await git(repo, "symbolic-ref", "--quiet", "--short", "HEAD")
    if res.ok and res.out.strip():
        return res.out.strip()
    return (await git(repo, "rev-parse", "HEAD")).out.strip()


# delete --------------------------------------------------------------------------------------


class DeleteOptions(TypedDict, total=False):
    force: bool
    keep_branch: bool


def _parse_status(out: str) -> list[str]:
    """``git status --porcelain -z`` -> ["M src/a.py", "?? notes.txt", ...]."""
    items, fields, i = [], out.split("\0"), 0
    while i < len(fields):
        field = fields[i]
        i += 1
        if len(field) < 4:
            continue
        code, name = field[:2].strip(), field[3:]
        if code[:1] in ("R", "C"):
            i += 1  # a rename or copy is followed by its source path
        items.append(f"{code} {name}")
    return items


def _present_blocking(where: str, paths: list[str]) -> list[str]:
    return [p for p in paths if os.path.lexists(os.path.join(where, p))]


async def _hidden_changes(hub: HubContext, where: str) -> list[str] | str:
    """Files marked assume-unchanged or skip-worktree whose content differs from the index.

    ``git status`` (and ``git stash``) do not look at them, so an edit there would be lost
    without a word. Returns ["H path", ...] or an error text. A skip-worktree file that is
    absent (a sparse checkout) is not a change.
    """
    listed = await git(where, "ls-files", "-v", "-z")
    if not listed.ok:
        return f"cannot list its files: {listed.reason()}"
    hidden = [
        entry[2:]
        for entry in listed.out.split("\0")
        if len(entry) > 2 and (entry[0].islower() or entry[0] == "S")
    ]
    present = await hub.run_blocking(_present_blocking, where, hidden)
    if not present:
        return []
    staged = await git(where, "ls-files", "-s", "-z", "--", *present)
    worktree_hashes = await git(where, "hash-object", "--", *present)
    for res in (staged, worktree_hashes):
        if not res.ok:
            return f"cannot compare its hidden files: {res.reason()}"
    index = {}
    for entry in staged.out.split("\0"):
        if "\t" in entry:
            meta, name = entry.split("\t", 1)
            index[name] = meta.split()[1]
    return [
        f"H {p}"
        for p, h in zip(present, worktree_hashes.out.split(), strict=False)
        if index.get(p) != h
    ]


async def _unique_commits(repo: str, wt: dict[str, Any]) -> list[str] | str:
    """Commits of the worktree's branch (or detached HEAD) that no other local branch and no
    remote-tracking branch contains, as "abc1234 subject" lines; or git's reason."""
    if "branch" in wt:
        branch = wt["branch"]
        args = [f"refs/heads/{branch}", "--not", f"--exclude={branch}", "--branches"]
    else:
        args = [wt.get("head", "HEAD"), "--not", "--branches"]
    res = await git(repo, "log", "--format=%h %s", *args, "--remotes", "--")
    if not res.ok:
        return res.reason()
    return [line for line in res.out.splitlines() if line]


@lua_api
async def delete(
    hub: HubContext, path: str, branch: str | None = None, opts: DeleteOptions | None = None
) -> Any:
    """worktree.delete(path, branch?, opts?) -> true | nil, err

    Removes the worktree at `path` (a directory of the hub's repository, as
    `worktree.list` shows it), then deletes its branch and prunes stale entries. Suspends
    only the calling task. Never loses work silently; by default it REFUSES, with a message
    listing what would be lost, when:

    * the worktree has uncommitted changes: modified, staged or untracked files (files the
      repository ignores, such as build output or a copied ``.env``, do not count and are
      deleted with the worktree);
    * its branch (or detached HEAD) has commits that no other local branch and no
      remote-tracking branch contains ("unpushed commits").

    Also refused: the main checkout, a locked worktree, a path that is not a worktree of the
    hub's repository, and a worktree whose branch is not `branch` (when given).
    The branch is deleted only when no commit would be lost (always, on the default path);
    ``opts.keep_branch = true`` keeps it.

    * `path`: absolute path of the worktree.
    * `branch`: the branch you expect it to have (default: whatever it has).
    * `opts.force`: quarantine instead of refusing (default: false). Uncommitted changes,
      untracked files included, are saved with ``git stash push --include-untracked``
      (message ``botster: worktree.delete <path> (<branch>)``; restore with
      ``git stash apply``), and a branch with unpushed commits is kept. A detached HEAD with
      commits on no branch is still refused: make a branch for them first.
    * `opts.keep_branch`: keep the branch (default: false).

    Returns true, or nil, err (``"worktree.delete: <path>: <reason>"``).
    Raises on a relative `path` or wrong argument types.

    ```lua
    local ok, err = worktree.delete(wt_path, "fix/login")
    if not ok then log.warn(err) end  -- e.g. "... has uncommitted changes (M app.py, ...)"
    ```
    """
    path = _check_abs(path, "path")
    if branch is not None:
        branch = _check_name(branch, "branch")
    opts = opts or {}
    async with _lock(hub):
        reason = await _delete(
            hub,
            str(hub.paths.repo),
            path,
            branch,
            force=opts.get("force", False),
            keep_branch=opts.get("keep_branch", False),
        )
    return True if reason is None else (None, f"worktree.delete: {path}: {reason}")


async def _delete(
    hub: HubContext, repo: str, path: str, branch: str | None, *, force: bool, keep_branch: bool
) -> str | None:
    """Does the work of ``delete``; returns None on success, else the reason."""
    entries = await worktree_entries(repo)
    if isinstance(entries, str):
        return entries
    wt = await _entry_at(hub, entries, path)
    if wt is None:
        return f"not a worktree of {entries[0]['path']}"
    if wt["is_main"]:
        return "is the main checkout of the repository; it is never deleted"
    if branch is not None and wt.get("branch") != branch:
        has = f"branch {wt['branch']}" if "branch" in wt else "a detached HEAD"
        return f"has {has} checked out, not {branch}"
    if wt.get("locked"):
        why = f" ({wt['locked_reason']})" if "locked_reason" in wt else ""
        return f"is locked{why}; unlock it first with git worktree unlock"
    where = wt["path"]

    dirty: list[str] = []
    if not wt.get("prunable"):
        status = await git(where, "status", "--porcelain=v1", "-z", "--untracked-files=all")
        if not status.ok:
            return f"cannot read its status: {status.reason()}"
        dirty = _parse_status(status.out)
        hidden = await _hidden_changes(hub, where)
        if isinstance(hidden, str):
            return hidden
        dirty += hidden
    unique = await _unique_commits(repo, wt)
    if isinstance(unique, str):
        return f"cannot check its commits: {unique}"
    if "branch" not in wt and unique:
        return (
            f"has a detached HEAD with {_plural(len(unique), 'commit')} on no branch "
            f"({_listing(unique)}); create a branch for them first"
        )
    if not force:
        lost = []
        if dirty:
            lost.append(
                f"has uncommitted changes ({_plural(len(dirty), 'file')}: {_listing(dirty)}); "
                "commit or stash them"
            )
        if unique:
            lost.append(
                f"branch {wt['branch']} has {_plural(len(unique), 'commit')} on no other "
                f"branch and not pushed ({_listing(unique)}); push or merge them"
            )
        if lost:
            return "; ".join(lost) + ", or pass {force = true} to quarantine instead"

    if dirty:
        label = wt.get("branch", "detached")
        hidden = [d[2:] for d in dirty if d.startswith("H ")]
        if hidden:
            # Visible to git again, so the stash below takes them too.
            unhide = await git(
                where,
                "update-index",
                "--no-assume-unchanged",
                "--no-skip-worktree",
                "--",
                *hidden,
                changes=True,
            )
            if not unhide.ok:
                return f"could not unhide {_listing(hidden)}: {unhide.reason()}"
        stash = await git(
            where,
            "stash",
            "push",
            "--include-untracked",
            "-m",
            f"botster: worktree.delete {where} ({label})",
            limit_s=GIT_CHANGE_TIMEOUT_S,
            changes=True,
        )
        if not stash.ok:
            return f"could not stash its uncommitted changes: {stash.reason()}"
        ref = (await git(repo, "rev-parse", "--short", "refs/stash")).out.strip()
        log.warning(
            "worktree.delete: %s: uncommitted changes quarantined as stash %s "
            "(restore with: git stash apply %s)",
            where,
            ref,
            ref,
        )

    removed = await git(
        repo, "worktree", "remove", where, limit_s=GIT_CHANGE_TIMEOUT_S, changes=True
    )
    if not removed.ok:
        return f"git worktree remove failed: {removed.reason()}"
    if "branch" in wt and not keep_branch and not unique:
        tip = await git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{wt['branch']}")
        # Only the commit we checked: a branch that moved meanwhile is kept.
        if tip.ok and tip.out.strip() == wt.get("head"):
            await git(repo, "branch", "-D", "--", wt["branch"], changes=True)
    await git(repo, "worktree", "prune", changes=True)
    return None


# repo_root / is_git_repo ---------------------------------------------------------------------


@lua_api
def repo_root(hub: HubContext) -> str:
    """worktree.repo_root() -> path

    The top directory of the hub's repository (the checkout the hub was started for; the
    hub refuses to start outside a repository). Example: ``local root = worktree.repo_root()``
    """
    return str(hub.paths.repo)


@lua_api
async def is_git_repo(hub: HubContext) -> bool:
    """worktree.is_git_repo() -> bool

    Whether the hub's repository is (still) a working git repository: false when its
    directory or its ``.git`` has gone, or git cannot run. Never fails.
    Example: ``if not worktree.is_git_repo() then log.warn("repository is gone") end``
    """
    res = await git(str(hub.paths.repo), "rev-parse", "--is-inside-work-tree")
    return res.ok and res.out.strip() == "true"


# copy_from_patterns --------------------------------------------------------------------------


def _os_reason(e: OSError) -> str:
    reason = e.strerror or str(e) or type(e).__name__
    reason = reason[:1].lower() + reason[1:]
    code = errno.errorcode.get(e.errno) if isinstance(e.errno, int) else None
    return reason + (f" ({code})" if code else "")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _walk_blocking(src: str, skip: tuple[int, int]) -> list[tuple[str, str]]:
    """(relative path, absolute path) of every non-directory under `src`, sorted, without
    entering ``.git``, symlinked directories, or the directory whose (st_dev, st_ino) is
    `skip`."""
    found: list[tuple[str, str]] = []
    stack = [("", src)]
    while stack:
        rel_dir, abs_dir = stack.pop()
        try:
            with os.scandir(abs_dir) as it:
                children = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError:
            continue
        for entry in children:
            if entry.name == ".git":
                continue
            rel = f"{rel_dir}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) != skip:
                    stack.append((rel + "/", entry.path))
            else:
                found.append((rel, entry.path))
    found.sort()
    return found


def _make_dirs_blocking(dst: str, rel_dir: str) -> str:
    """Creates `rel_dir` under `dst`, refusing to pass through a symlink or a file."""
    here = dst
    for part in [p for p in rel_dir.split("/") if p]:
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            os.mkdir(here)
            continue
        if _stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, "destination directory is a symlink", here)
        if not _stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, "destination parent is not a directory", here)
    return here


def _copy_one_blocking(source: str, target: str) -> None:
    """Copies a regular file's bytes and mode to a new `target`; EEXIST if it exists."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
    fd_in = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd_in)
        if not _stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", source)
        fd_out = os.open(
            target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            while chunk := os.read(fd_in, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd_out, view) :]
            os.fchmod(fd_out, _stat.S_IMODE(st.st_mode))
        except BaseException:
            os.close(fd_out)
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
        os.close(fd_out)
    finally:
        os.close(fd_in)


def _copy_patterns_blocking(src: str, dst: str, patterns_file: str) -> dict[str, Any] | str:
    """The core of ``copy_from_patterns``: the result table, or an error message."""
    import pathspec

    op = "worktree.copy_from_patterns"
    dirs = []
    for where in (src, dst):
        try:
            st = os.stat(where)
        except OSError as e:
            return f"{op}: {where}: {_os_reason(e)}"
        if not _stat.S_ISDIR(st.st_mode):
            return f"{op}: {where}: not a directory (ENOTDIR)"
        dirs.append(st)
    file = os.path.join(src, patterns_file)
    try:
        with open(file, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as e:
        return f"{op}: {file}: {_os_reason(e)}"
    try:
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
    except ValueError as e:
        return f"{op}: {file}: {e}"
    real_src = os.path.realpath(src)
    copied: list[str] = []
    skipped: list[dict[str, str]] = []
    for rel, full in _walk_blocking(src, (dirs[1].st_dev, dirs[1].st_ino)):
        if not spec.match_file(rel):
            continue
        source = full
        if os.path.islink(full):
            # Never followed out of the source tree; a link inside it is copied as its content.
            resolved = os.path.realpath(full)
            if not _inside(resolved, real_src):
                skipped.append({"path": rel, "reason": "symlink pointing outside the source"})
                continue
            source = resolved
        try:
            parent = _make_dirs_blocking(dst, os.path.dirname(rel))
            _copy_one_blocking(source, os.path.join(parent, os.path.basename(rel)))
        except FileExistsError:
            skipped.append({"path": rel, "reason": "exists in the destination"})
            continue
        except OSError as e:
            skipped.append({"path": rel, "reason": _os_reason(e)})
            continue
        copied.append(rel)
    return {"copied": copied, "skipped": skipped}


@lua_api
async def copy_from_patterns(hub: HubContext, src: str, dst: str, patterns_file: str) -> Any:
    """worktree.copy_from_patterns(src, dst, patterns_file) -> {copied, skipped} | nil, err

    Copies the files under `src` that match the patterns in `patterns_file` to the same
    relative paths under `dst`, keeping their permission bits. Made for seeding a new
    worktree with files git does not carry, such as ``.env``:
    ``worktree.copy_from_patterns(worktree.repo_root(), e.path, ".botster/workspace_include")``.

    * `src`, `dst`: absolute paths of existing directories.
    * `patterns_file`: gitignore-style patterns, one per line; a relative path is relative to
      `src`. Blank lines and ``#`` comments are ignored; ``!pattern`` excludes again;
      ``*`` stays within a directory and ``**`` crosses them; ``dir/`` matches everything
      under a directory; a leading ``/`` anchors at `src`, otherwise a name matches at any
      depth (``.env`` matches ``a/b/.env``). Each file is judged by its own path, the last
      matching pattern winning, so ``config/`` then ``!config/public.yml`` copies all of
      ``config`` but that file (git itself cannot re-include a file below an excluded
      directory).

    ``.git`` is never entered, nor `dst` when it lies inside `src`. Symlinks are never
    followed out of `src`: a matching link to a file inside `src` is copied as that file's
    content, others are skipped; linked directories are not entered. Files that already
    exist in `dst` are left alone, nothing in `dst` is written through a symlink, and empty
    directories are not copied.

    Returns ``{copied = {relative paths...}, skipped = {{path, reason}...}}`` (both sorted
    by path; a file that could not be copied is in `skipped` with the reason), or nil, err
    when `src` or `dst` is not a directory or the pattern file cannot be read or parsed
    (``"worktree.copy_from_patterns: <path>: <reason>"``).
    Raises on a relative `src` or `dst` or a non-string argument.

    ```lua
    local res, err = worktree.copy_from_patterns(root, wt_path, root .. "/.botster/include")
    if res then log.info("copied " .. #res.copied .. " files") else log.warn(err) end
    ```
    """
    src = _check_abs(src, "src")
    dst = _check_abs(dst, "dst")
    if not patterns_file:
        raise ArgumentError("patterns_file: expected a non-empty string, got an empty string")
    result = await hub.run_blocking(_copy_patterns_blocking, src, dst, patterns_file)
    return (None, result) if isinstance(result, str) else result


LUA = {
    "check_branch": check_branch,
    "find": find,
    "list": list,
    "create_async": create_async,
    "delete": delete,
    "repo_root": repo_root,
    "is_git_repo": is_git_repo,
    "copy_from_patterns": copy_from_patterns,
}
WRONG_DOOR = {
    "exists": "use worktree.find(branch) ~= nil",
    "get": "use worktree.find(branch)",
    "create": "use worktree.create_async(opts) and listen for worktree_created",
    "add": "use worktree.create_async(opts) and listen for worktree_created",
    "remove": "use worktree.delete(path, branch)",
    "root": "use worktree.repo_root()",
    "copy": "use worktree.copy_from_patterns(src, dst, patterns_file)",
}
