"""The ``worktree`` primitive and ``hub``'s repository functions, against real git repositories
driven through Lua plugins in a real hub.

Each test prepares the repository with git (branches, worktrees, dirty files) before the hub
starts; the plugin then does its calls at load time and reports every result. Worktrees are
made under a temp ``BOTSTER_WORKTREE_BASE``; the repository directory is named ``repo``, so a
branch ``b`` lands at ``<base>/repo/b``.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from botster.primitives.hub import owner_name_from_url
from tests.lua_prelude import plugin, strip_position


def git(cwd: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=check, capture_output=True, text=True)
    return done.stdout.strip()


def commit(cwd: Path, name: str, content: str = "x\n") -> str:
    (cwd / name).write_text(content)
    git(cwd, "add", name)
    git(cwd, "commit", "-q", "-m", f"add {name}")
    return git(cwd, "rev-parse", "HEAD")


async def raised(proc) -> dict[str, str]:
    """The `raises` report: each message checked to point at the plugin's line, then without it."""
    return {k: strip_position(v) for k, v in (await proc.result("raises")).items()}


def real(path: Path | str) -> str:
    return os.path.realpath(path)


@pytest.fixture
def base(tmp_path: Path) -> Path:
    d = tmp_path / "wt-base"
    d.mkdir()
    return d


# `raises(f, ...)`: what f(...) raises when called from a line of the plugin.
RAISES = r"""
local function raises(f, ...)
  local args = table.pack(...)
  return raised(function() local _ = f(table.unpack(args, 1, args.n)) end)
end
"""


async def start(hub, base: Path, source: str, **values: str):
    return await hub(
        plugins={"wt": plugin(RAISES + source, **values)},
        env={"BOTSTER_WORKTREE_BASE": str(base)},
    )


# create_async ------------------------------------------------------------------------------


CREATE = r"""
-- Every request reports its event under its tag; when all have answered, `after` runs.
local pending, left = {}, 0
local function answered(e)
  local tag = pending[e.request_id]
  if not tag then return end
  pending[e.request_id] = nil
  e.request_id = nil
  report(tag, e)
  left = left - 1
  if left == 0 then
    report("list", worktree.list())
    report_all("find", worktree.find("feat/login"), worktree.find("nope"), worktree.find("bad..name"))
    report("get_worktrees", hub.get_worktrees())
    report_all("repo", worktree.repo_root(), worktree.is_git_repo())
  end
end
events.on("worktree_created", answered)
events.on("worktree_create_failed", answered)
local function create(tag, opts)
  local id = worktree.create_async(opts)
  assert(id:match("^worktree_%d+$"), id)
  pending[id] = tag
  left = left + 1
end

create("new", {branch = "feat/login", prompt = "Fix login", issue_number = 42,
               metadata = {agent = "claude", tags = {"a", "b"}}})
create("again", {branch = "feat/login", metadata = {n = 2}})
create("from_dev", {branch = "from-dev", base = "dev"})
create("existing", {branch = "existing", base = "dev"})
create("custom", {branch = "custom", path = custom})
create("elsewhere", {branch = "taken"})
create("main", {branch = "main"})
create("invalid", {branch = "bad..name"})
create("occupied", {branch = "occupied"})
create("bad_base", {branch = "x", base = "no-such-ref"})
create("nested", {branch = "feat/login/deeper"})
create("remote", {branch = "remote-only"})

report("raises", {
  missing = raises(worktree.create_async, {}),
  empty = raises(worktree.create_async, {branch = ""}),
  unknown = raises(worktree.create_async, {branch = "x", label = "y"}),
  relative = raises(worktree.create_async, {branch = "x", path = "rel/dir"}),
  typed = raises(worktree.create_async, {branch = "x", issue_number = "7"}),
  not_table = raises(worktree.create_async, "x"),
})
"""


async def test_create_async_covers_new_existing_reused_and_refused_branches(
    hub, git_repo: Path, base: Path, tmp_path: Path
) -> None:
    main_sha = git(git_repo, "rev-parse", "HEAD")
    git(git_repo, "checkout", "-q", "-b", "dev")
    dev_sha = commit(git_repo, "dev.txt")
    git(git_repo, "checkout", "-q", "main")
    git(git_repo, "branch", "existing", main_sha)
    elsewhere = tmp_path / "elsewhere"
    git(git_repo, "worktree", "add", "-q", "-b", "taken", str(elsewhere))
    git(git_repo, "remote", "add", "origin", "https://git.example.invalid/acme/repo.git")
    git(git_repo, "update-ref", "refs/remotes/origin/remote-only", dev_sha)
    occupied = base / "repo" / "occupied"
    occupied.mkdir(parents=True)
    (occupied / "notes.txt").write_text("keep me\n")
    custom = tmp_path / "custom-wt"

    proc = await start(hub, base, CREATE, custom=str(custom))
    wt = base / "repo"

    new = await proc.result("new")
    assert new == {
        "branch": "feat/login",
        "path": real(wt / "feat/login"),
        "created": True,
        "branch_created": True,
        "base": "main",
        "prompt": "Fix login",
        "issue_number": 42,
        "metadata": {"agent": "claude", "tags": ["a", "b"]},
    }
    # A branch's slashes are directories; its new branch starts at main, with no upstream.
    assert git(wt / "feat/login", "rev-parse", "HEAD") == main_sha
    assert git(wt / "feat/login", "branch", "--show-current") == "feat/login"
    assert git(git_repo, "config", "--get-regexp", "^branch\\.feat/login\\.", check=False) == ""

    assert await proc.result("again") == {
        "branch": "feat/login",
        "path": real(wt / "feat/login"),
        "created": False,
        "branch_created": False,
        "metadata": {"n": 2},
    }
    from_dev = await proc.result("from_dev")
    assert (from_dev["base"], from_dev["branch_created"]) == ("dev", True)
    assert git(wt / "from-dev", "rev-parse", "HEAD") == dev_sha

    # An existing branch is checked out as it is: `base` does not move it.
    existing = await proc.result("existing")
    assert (existing["created"], existing["branch_created"], "base" in existing) == (
        True,
        False,
        False,
    )
    assert git(wt / "existing", "rev-parse", "HEAD") == main_sha

    custom_made = await proc.result("custom")
    assert custom_made["path"] == real(custom)
    assert git(custom, "branch", "--show-current") == "custom"

    # A branch that exists only on origin is created tracking it.
    remote = await proc.result("remote")
    assert (remote["base"], remote["branch_created"]) == ("origin/remote-only", True)
    assert git(wt / "remote-only", "rev-parse", "HEAD") == dev_sha
    assert git(git_repo, "rev-parse", "--abbrev-ref", "remote-only@{upstream}") == (
        "origin/remote-only"
    )

    failures = {
        tag: await proc.result(tag)
        for tag in ("elsewhere", "main", "invalid", "occupied", "bad_base", "nested")
    }
    for tag, event in failures.items():
        assert set(event) == {"branch", "error"}, (tag, event)
        assert event["error"].startswith(f"worktree.create_async: {event['branch']}: "), event
    assert (
        f"branch taken is already checked out at {real(elsewhere)} (a worktree); "
        f"pass opts.path = '{real(elsewhere)}' to use that worktree"
    ) in failures["elsewhere"]["error"]
    assert (
        f"branch main is already checked out at {real(git_repo)} "
        "(the main checkout of the repository)"
    ) in failures["main"]["error"]
    assert "'bad..name' is not a valid branch name" in failures["invalid"]["error"]
    assert (
        f"{occupied} already exists and is not a worktree of occupied; nothing there is removed"
        in failures["occupied"]["error"]
    )
    assert (occupied / "notes.txt").read_text() == "keep me\n"
    assert "base 'no-such-ref' is not a branch, tag or commit of" in failures["bad_base"]["error"]
    # Git cannot hold feat/login and feat/login/deeper, so their directories never collide.
    assert "git worktree add failed:" in failures["nested"]["error"]
    assert not (wt / "feat/login/deeper").exists()

    assert await raised(proc) == {
        "missing": "worktree.create_async: opts.branch: expected string, got nil",
        "empty": "worktree.create_async: opts.branch: expected a non-empty string, "
        "got an empty string",
        "unknown": "worktree.create_async: opts: unknown key 'label' "
        "(known: base, branch, issue_number, metadata, path, prompt)",
        "relative": "worktree.create_async: opts.path: expected an absolute path, got 'rel/dir'",
        "typed": "worktree.create_async: opts.issue_number: expected integer, got string",
        "not_table": "worktree.create_async: opts: expected table, got string",
    }

    listed = await proc.result("list")
    by_branch = {e.get("branch"): e for e in listed}
    assert listed[0] == {
        "path": real(git_repo),
        "branch": "main",
        "head": main_sha,
        "is_main": True,
    }
    assert set(by_branch) == {
        "main",
        "taken",
        "feat/login",
        "from-dev",
        "existing",
        "custom",
        "remote-only",
    }
    assert by_branch["feat/login"] == {
        "path": real(wt / "feat/login"),
        "branch": "feat/login",
        "head": main_sha,
        "is_main": False,
    }
    assert await proc.result("get_worktrees") == listed
    assert await proc.result("find") == [real(wt / "feat/login"), None, None]
    assert await proc.result("repo") == [real(git_repo), True]


# delete ------------------------------------------------------------------------------------


DELETE = r"""
local function at(name) return wtbase .. "/repo/" .. name end
report_all("dirty", worktree.delete(at("dirty"), "dirty"))
report_all("untracked", worktree.delete(at("untracked")))
report_all("unpushed", worktree.delete(at("unpushed"), "unpushed"))
report_all("both", worktree.delete(at("both")))
report_all("main", worktree.delete(repo))
report_all("stranger", worktree.delete(stranger))
report_all("wrong_branch", worktree.delete(at("clean"), "other"))
report_all("locked", worktree.delete(at("locked")))
-- First success: its final prune would otherwise drop the entry of the vanished one.
report_all("gone", worktree.delete(at("gone"), "gone"))
report_all("clean", worktree.delete(at("clean"), "clean"))
report_all("pushed", worktree.delete(at("pushed"), "pushed"))
report_all("ignored", worktree.delete(at("ignored")))
report_all("kept", worktree.delete(at("kept"), "kept", {keep_branch = true}))
report_all("force_dirty", worktree.delete(at("force_dirty"), "force_dirty", {force = true}))
report_all("force_unpushed", worktree.delete(at("force_unpushed"), nil, {force = true}))
report("raises", {
  relative = raises(worktree.delete, "rel/path"),
  branch_type = raises(worktree.delete, repo, 5),
  unknown = raises(worktree.delete, repo, nil, {forse = true}),
})
"""


async def test_delete_refuses_to_lose_work_and_removes_clean_worktrees(
    hub, git_repo: Path, base: Path, tmp_path: Path
) -> None:
    (git_repo / ".gitignore").write_text(".env\n")
    git(git_repo, "add", ".gitignore")
    git(git_repo, "commit", "-q", "-m", "ignore .env")
    wt = base / "repo"

    def add(name: str) -> Path:
        git(git_repo, "worktree", "add", "-q", "-b", name, str(wt / name))
        return wt / name

    (add("dirty") / "README.md").write_text("changed\n")
    (add("untracked") / "notes.txt").write_text("new\n")
    commit(add("unpushed"), "work.txt")
    both = add("both")
    commit(both, "one.txt")
    commit(both, "two.txt")
    (both / "README.md").write_text("changed\n")
    (both / "scratch.txt").write_text("new\n")
    add("clean")
    pushed_sha = commit(add("pushed"), "pushed.txt")
    git(git_repo, "update-ref", "refs/remotes/origin/pushed", pushed_sha)
    (add("ignored") / ".env").write_text("SECRET=1\n")
    add("kept")
    add("locked")
    git(git_repo, "worktree", "lock", "--reason", "on a usb disk", str(wt / "locked"))
    gone = add("gone")
    subprocess.run(["rm", "-rf", str(gone)], check=True)
    force_dirty = add("force_dirty")
    (force_dirty / "README.md").write_text("rescued edit\n")
    (force_dirty / "draft.txt").write_text("rescued draft\n")
    commit(add("force_unpushed"), "precious.txt")
    stranger = tmp_path / "not-a-worktree"
    stranger.mkdir()

    proc = await start(
        hub, base, DELETE, wtbase=str(base), repo=str(git_repo), stranger=str(stranger)
    )
    proc.expect_log(r"WARNING .*uncommitted changes quarantined as stash")

    def refused(tag_result: list, path: Path, *parts: str) -> None:
        ok, err = tag_result
        assert ok is None
        assert err.startswith(f"worktree.delete: {path}: "), err
        for part in parts:
            assert part in err, (part, err)

    refused(
        await proc.result("dirty"),
        wt / "dirty",
        "has uncommitted changes (1 file: M README.md); commit or stash them",
        "or pass {force = true} to quarantine instead",
    )
    refused(
        await proc.result("untracked"),
        wt / "untracked",
        "has uncommitted changes (1 file: ?? notes.txt)",
    )
    refused(
        await proc.result("unpushed"),
        wt / "unpushed",
        "branch unpushed has 1 commit on no other branch and not pushed (",
        " add work.txt); push or merge them",
    )
    refused(
        await proc.result("both"),
        wt / "both",
        "has uncommitted changes (2 files: M README.md, ?? scratch.txt)",
        "branch both has 2 commits on no other branch",
    )
    refused(await proc.result("main"), git_repo, "is the main checkout of the repository")
    refused(await proc.result("stranger"), stranger, f"not a worktree of {real(git_repo)}")
    refused(
        await proc.result("wrong_branch"),
        wt / "clean",
        "has branch clean checked out, not other",
    )
    refused(await proc.result("locked"), wt / "locked", "is locked (on a usb disk)")
    for name in ("dirty", "untracked", "unpushed", "both", "locked"):
        assert (wt / name).is_dir(), name
    assert (wt / "dirty" / "README.md").read_text() == "changed\n"

    for tag in ("clean", "pushed", "ignored", "kept", "gone", "force_dirty", "force_unpushed"):
        assert await proc.result(tag) == [True], tag
        assert not (wt / tag).exists(), tag
    branches = set(git(git_repo, "branch", "--format=%(refname:short)").split())
    # Merged branches go; kept on request, and a branch with unpushed commits always stays.
    assert {"clean", "pushed", "ignored", "gone", "force_dirty"}.isdisjoint(branches)
    assert {"kept", "force_unpushed", "unpushed", "dirty"} <= branches
    # The forced delete quarantined the uncommitted work in a stash, untracked file included.
    stash = git(git_repo, "stash", "list")
    assert f"botster: worktree.delete {real(wt / 'force_dirty')} (force_dirty)" in stash
    assert git(git_repo, "show", "stash@{0}:README.md") == "rescued edit"
    assert git(git_repo, "show", "stash@{0}^3:draft.txt") == "rescued draft"
    listed = git(git_repo, "worktree", "list", "--porcelain")
    assert "gone" not in listed  # pruned

    assert await raised(proc) == {
        "relative": "worktree.delete: path: expected an absolute path, got 'rel/path'",
        "branch_type": "worktree.delete: branch: expected string, got number",
        "unknown": "worktree.delete: opts: unknown key 'forse' (known: force, keep_branch)",
    }


# a missing repository ----------------------------------------------------------------------


MISSING = r"""
local function answered(e) report("create", e) end
events.on("worktree_created", answered)
events.on("worktree_create_failed", answered)
assert(fs.rename(repo .. "/.git", repo .. "/.git-away"))
local function all(...) return table.pack(...) end
local got = {}
for _, r in ipairs({all(worktree.is_git_repo()), all(worktree.list()), all(worktree.find("main")),
                    all(hub.get_worktrees()), all(worktree.delete(repo .. "/x")),
                    all(hub.detect_repo())}) do
  for i = 1, math.max(r.n, 2) do got[#got + 1] = r[i] == nil and json.null or r[i] end
end
report("missing", json.array(got))
worktree.create_async({branch = "feat"})
events.on("worktree_create_failed", function()
  assert(fs.rename(repo .. "/.git-away", repo .. "/.git"))
  report_all("back", worktree.is_git_repo())
end)
"""


async def test_a_missing_repository_fails_with_clear_errors(hub, git_repo: Path, base) -> None:
    proc = await start(hub, base, MISSING, repo=str(git_repo))
    reason = f"{git_repo} is not a git repository"
    assert await proc.result("missing") == [
        False,
        None,  # is_git_repo() has no second value
        None,
        f"worktree.list: {reason}",
        None,
        f"worktree.find: main: {reason}",
        None,
        f"hub.get_worktrees: {reason}",
        None,
        f"worktree.delete: {git_repo}/x: {reason}",
        None,
        f"hub.detect_repo: {reason}",
    ]
    failed = await proc.result("create")
    assert failed == {
        "request_id": failed["request_id"],
        "branch": "feat",
        "error": f"worktree.create_async: feat: {reason}",
    }
    assert await proc.result("back") == [True]


# copy_from_patterns ------------------------------------------------------------------------


COPY = r"""
report_all("copy", worktree.copy_from_patterns(src, dst, ".botster/workspace_include"))
report_all("again", worktree.copy_from_patterns(src, dst, src .. "/.botster/workspace_include"))
report_all("inner", worktree.copy_from_patterns(src, src .. "/inner", ".botster/workspace_include"))
report_all("no_file", worktree.copy_from_patterns(src, dst, "missing.txt"))
report_all("no_src", worktree.copy_from_patterns(src .. "/nope", dst, "x"))
report_all("bad", worktree.copy_from_patterns(src, dst, "bad.txt"))
report("raises", {
  relative = raises(worktree.copy_from_patterns, "rel", dst, "x"),
  nil_dst = raises(worktree.copy_from_patterns, src, nil, "x"),
})
"""

PATTERNS = """\
# files git does not carry into a new worktree
.env
.env.*
!.env.example

config/local/
!config/local/readme.md
/root-only.txt
**/certs/*.pem
link-*
"""


async def test_copy_from_patterns_copies_matching_files_safely(
    hub, git_repo: Path, base: Path, tmp_path: Path
) -> None:
    src = git_repo
    files = {
        ".env": "TOP=1\n",
        ".env.local": "LOCAL=1\n",
        ".env.example": "EXAMPLE=1\n",
        "app/.env": "APP=1\n",
        "config/local/a.yml": "a: 1\n",
        "config/local/deep/b.yml": "b: 2\n",
        "config/local/readme.md": "readme\n",
        "config/shared.yml": "shared\n",
        "root-only.txt": "root\n",
        "sub/root-only.txt": "not root\n",
        "x/y/certs/site.pem": "pem\n",
        "x/y/certs/site.key": "key\n",
        "already.env/.env": "dst has its own\n",
    }
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    (src / ".env").chmod(0o600)
    (src / "config/local/a.yml").chmod(0o751)
    outside = tmp_path / "outside-secret"
    outside.write_text("outside\n")
    (src / "link-in").symlink_to("root-only.txt")
    (src / "link-out").symlink_to(outside)
    (src / "link-dir").symlink_to(tmp_path)
    (src / ".git" / ".env").write_text("never copied\n")
    os.mkfifo(src / ".env.fifo")  # opening it must not wait for a writer
    (src / "inner").mkdir()  # a destination inside the source is not copied into itself
    layer = src / ".botster"
    layer.mkdir(exist_ok=True)
    (layer / "workspace_include").write_text(PATTERNS)
    (src / "bad.txt").write_text("!\n")
    dst = tmp_path / "dst"
    (dst / "already.env").mkdir(parents=True)
    (dst / "already.env" / ".env").write_text("mine\n")
    # A symlinked directory in the destination is never written through.
    (dst / "app").symlink_to(outside.parent)

    proc = await start(hub, base, COPY, src=str(src), dst=str(dst))
    (result,) = await proc.result("copy")
    assert result["copied"] == [
        ".env",
        ".env.local",
        "config/local/a.yml",
        "config/local/deep/b.yml",
        "link-in",
        "root-only.txt",
        "x/y/certs/site.pem",
    ]
    skipped = {s["path"]: s["reason"] for s in result["skipped"]}
    assert skipped == {
        "already.env/.env": "exists in the destination",
        "app/.env": "destination directory is a symlink (ELOOP)",
        "link-dir": "symlink pointing outside the source",
        "link-out": "symlink pointing outside the source",
        ".env.fifo": "not a regular file (EINVAL)",
    }
    for rel in result["copied"]:
        assert not (dst / rel).is_symlink()
        expected = src / rel
        assert (dst / rel).read_text() == expected.read_text(), rel
    assert (dst / ".env").stat().st_mode & 0o777 == 0o600
    assert (dst / "config/local/a.yml").stat().st_mode & 0o777 == 0o751
    assert (dst / "already.env/.env").read_text() == "mine\n"
    assert not (tmp_path / ".env").exists()  # nothing went through dst/app

    (inner,) = await proc.result("inner")
    assert inner["copied"] == sorted(result["copied"] + ["already.env/.env", "app/.env"])
    assert not (src / "inner" / "inner").exists()
    (again,) = await proc.result("again")
    assert again["copied"] == []
    assert {s["reason"] for s in again["skipped"]} >= {"exists in the destination"}
    assert await proc.result("no_file") == [
        None,
        f"worktree.copy_from_patterns: {src}/missing.txt: no such file or directory (ENOENT)",
    ]
    assert await proc.result("no_src") == [
        None,
        f"worktree.copy_from_patterns: {src}/nope: no such file or directory (ENOENT)",
    ]
    bad = await proc.result("bad")
    assert bad[0] is None and bad[1].startswith(f"worktree.copy_from_patterns: {src}/bad.txt: ")
    assert await raised(proc) == {
        "relative": "worktree.copy_from_patterns: src: expected an absolute path, got 'rel'",
        "nil_dst": "worktree.copy_from_patterns: dst: expected string, got nil",
    }


# hub: detect_repo, server_id, remote-access refusals ----------------------------------------


HUB = r"""
report_all("detect", hub.detect_repo())
report_all("server_id", hub.server_id())
report_all("offer", hub.handle_webrtc_offer("browser-1", "v=0"))
report_all("ice", hub.handle_ice_candidate("browser-1", {candidate = "c", sdpMid = "0"}))
report_all("ratchet", hub.request_ratchet_restart("browser-1"))
report("raises", {
  offer = raises(hub.handle_webrtc_offer, "browser-1", nil),
  ice = raises(hub.handle_ice_candidate, nil, "c"),
  ratchet = raises(hub.request_ratchet_restart, 7),
})
"""


async def test_hub_detect_repo_and_remote_access_stubs(hub, git_repo: Path, base) -> None:
    proc = await start(hub, base, HUB)
    assert await proc.result("detect") == [None, "hub.detect_repo: No such remote 'origin'"]
    assert await proc.result("server_id") == [None]
    for tag, fn in (
        ("offer", "handle_webrtc_offer"),
        ("ice", "handle_ice_candidate"),
        ("ratchet", "request_ratchet_restart"),
    ):
        # Real since issue 14: an identity that is not paired gets nil, err.
        assert await proc.result(tag) == [
            None,
            f"hub.{fn}: browser browser-1… is not paired with this hub",
        ]
    assert await raised(proc) == {
        "offer": "hub.handle_webrtc_offer: sdp: expected string, got nil",
        "ice": "hub.handle_ice_candidate: identity: expected string, got nil",
        "ratchet": "hub.request_ratchet_restart: identity: expected string, got number",
    }
    await proc.stop_and_verify()

    for url in ("https://github.com/acme/widgets.git", "git@github.com:acme/widgets.git"):
        git(git_repo, "remote", "remove", "origin", check=False)
        git(git_repo, "remote", "add", "origin", url)
        proc = await start(hub, base, HUB)
        assert await proc.result("detect") == ["acme/widgets"], url
        await proc.stop_and_verify()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://github.com/owner/name.git", "owner/name"),
        ("https://github.com/owner/name", "owner/name"),
        ("https://user:token@github.com:443/owner/name.git/", "owner/name"),
        ("http://gitlab.example/group/sub/name.git", "group/sub/name"),
        ("git@github.com:owner/name.git", "owner/name"),
        ("github.com:owner/name", "owner/name"),
        ("ssh://git@github.com/owner/name.git", "owner/name"),
        ("ssh://git@host.example:2222/owner/name", "owner/name"),
        ("git://host.example/owner/name.git", "owner/name"),
        ("/srv/git/name.git", None),
        ("file:///srv/git/owner/name.git", None),
        ("../relative/name", None),
        ("https://github.com/just-owner", None),
        ("git@github.com:name.git", None),
    ],
)
def test_owner_name_from_url(url: str, expected: str | None) -> None:
    assert owner_name_from_url(url) == expected


def test_error_lines_of_git_are_kept_whole() -> None:
    from botster.hub.git import GitResult

    res = GitResult(128, "", "Preparing worktree\nfatal: 'x' is already checked out at '/a'\n")
    assert res.reason() == "'x' is already checked out at '/a'"
    assert re.fullmatch(r"git exited with code 1", GitResult(1, "", "").reason())


# the git runner, in-process -------------------------------------------------------------------


async def test_git_runner_kills_a_stuck_command_and_its_children(git_repo: Path) -> None:
    from botster.hub.git import git as run_git

    # The alias runs a shell whose child keeps git's pipes open: only killing the whole
    # process group ends the wait.
    res = await run_git(str(git_repo), "-c", "alias.stuck=!sleep 30 | cat", "stuck", limit_s=0.3)
    assert (res.code, res.err) == (None, "git stuck did not finish within 0.3 s")


async def test_git_runner_cancelled_lets_a_change_finish_but_kills_a_query(
    git_repo: Path, tmp_path: Path
) -> None:
    import asyncio

    from botster.hub.git import git as run_git

    started, finished = tmp_path / "started", tmp_path / "finished"
    os.mkfifo(started)
    loop = asyncio.get_running_loop()
    # A change is waited for (0.2 s); a query would run for a minute unless killed.
    for changes, seconds in ((True, 0.2), (False, 60)):
        slow = f"alias.slow=!echo go > {started}; sleep {seconds}; touch {finished}"
        task = loop.create_task(run_git(str(git_repo), "-c", slow, "slow", changes=changes))
        # Reading the FIFO returns once git's shell has opened it: the command is running.
        assert await loop.run_in_executor(None, started.read_text) == "go\n"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert finished.exists() is changes, f"changes={changes}"
        finished.unlink(missing_ok=True)


def test_git_environment_is_clean(isolated_env, monkeypatch: pytest.MonkeyPatch) -> None:
    from botster.hub.git import _git_env

    monkeypatch.setenv("GIT_DIR", "/elsewhere/.git")
    monkeypatch.setenv("GIT_INDEX_FILE", "/elsewhere/index")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    env = _git_env()
    assert "GIT_DIR" not in env and "GIT_INDEX_FILE" not in env
    assert env["GIT_AUTHOR_NAME"] == "Botster Test"  # identity is kept (isolated_env)
    assert (env["GIT_TERMINAL_PROMPT"], env["LC_ALL"]) == ("0", "C")
