"""watch.directory / watch.unwatch: native and polling, kinds, pattern, recursion, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

WATCHER = """
local mode = {mode}
local id
id = watch.directory("{dir}", mode, function(e)
  local rel = e.path:sub(#"{dir}" + 2)
  local old = e.old_path and e.old_path:sub(#"{dir}" + 2) or nil
  log.info("RESULT ev " .. json.encode({{kind = e.kind, rel = rel, old = old,
    is_dir = e.is_dir, same_id = e.watch_id == id}}))
end)
log.info("RESULT started " .. tostring(id ~= nil))
"""


def plugin(dir_: Path, opts: str) -> str:
    return WATCHER.format(dir=dir_, mode=opts)


async def next_event(proc, since: int, want: dict) -> int:
    """Waits for an event matching `want`; returns the log position after it."""
    pos = since
    while True:
        m = await proc.wait_for(r"RESULT ev (.*)$", since=pos)
        pos = proc.lines.index(m.string, pos) + 1
        import json

        ev = json.loads(m.group(1))
        if all(ev.get(k) == v for k, v in want.items()):
            assert ev["same_id"] is True
            return pos


@pytest.mark.parametrize(
    "opts", ["{}", "{poll = true, poll_interval = 0.05}"], ids=["native", "poll"]
)
async def test_create_modify_rename_delete(hub, tmp_path: Path, opts: str):
    d = tmp_path / "w"
    d.mkdir()
    proc = await hub(plugins={"w": plugin(d, opts)})
    assert await proc.result("started") is True
    pos = proc.mark()
    (d / "a.txt").write_text("1")
    pos = await next_event(proc, pos, {"kind": "create", "rel": "a.txt"})
    with open(d / "a.txt", "a") as f:
        f.write("more")
    pos = await next_event(proc, pos, {"kind": "modify", "rel": "a.txt"})
    os.rename(d / "a.txt", d / "b.txt")
    if "poll" in opts:
        # Polling sees the move by inode, like native events do.
        pos = await next_event(proc, pos, {"kind": "rename", "rel": "b.txt", "old": "a.txt"})
    else:
        pos = await next_event(proc, pos, {"kind": "rename", "rel": "b.txt", "old": "a.txt"})
    (d / "b.txt").unlink()
    await next_event(proc, pos, {"kind": "delete", "rel": "b.txt"})


async def test_recursive_by_default_and_pattern_filters(hub, tmp_path: Path):
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    proc = await hub(
        plugins={
            "rec": plugin(d, '{pattern = "*.lua"}'),
        }
    )
    await proc.result("started")
    pos = proc.mark()
    (d / "sub" / "skip.txt").write_text("x")
    (d / "sub" / "deep.lua").write_text("x")
    pos = await next_event(proc, pos, {"kind": "create", "rel": "sub/deep.lua"})
    assert not any("skip.txt" in line for line in proc.lines)


async def test_non_recursive_ignores_subdirectories(hub, tmp_path: Path):
    d = tmp_path / "flat"
    (d / "sub").mkdir(parents=True)
    proc = await hub(plugins={"flat": plugin(d, "{recursive = false}")})
    await proc.result("started")
    pos = proc.mark()
    (d / "sub" / "inner.txt").write_text("x")
    (d / "top.txt").write_text("x")
    pos = await next_event(proc, pos, {"kind": "create", "rel": "top.txt"})
    assert not any("inner.txt" in line for line in proc.lines)


async def test_unwatch_stops_events_and_is_idempotent(hub, tmp_path: Path):
    d = tmp_path / "u"
    d.mkdir()
    proc = await hub(
        plugins={
            "u": f"""
        local n = 0
        local id
        id = watch.directory("{d}", function(e)
          n = n + 1
          log.info("RESULT first " .. e.path:match("[^/]+$"))
          log.info("RESULT unwatch " .. json.encode({{watch.unwatch(id), watch.unwatch(id)}}))
        end)
        watch.directory("{d}", {{pattern = "marker*"}}, function(e)
          log.info("RESULT marker " .. n)
        end)
    """
        }
    )
    await proc.wait_for("hub ready")
    (d / "one").write_text("x")
    assert await proc.result("first") == "one"
    assert await proc.result("unwatch") == [True, False]
    (d / "two").write_text("x")
    (d / "marker").write_text("x")
    assert await proc.result("marker") == 1
    assert "RESULT first two" not in proc.log


async def test_errors(hub, tmp_path: Path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    proc = await hub(
        plugins={
            "e": f"""
        local function try(fn) local ok, err = pcall(fn) return err end
        local function pair(a, b) return json.encode({{ok = a ~= nil, err = b}}) end
        log.info("RESULT missing " .. pair(watch.directory("{tmp_path}/nope", function() end)))
        log.info("RESULT notdir " .. pair(watch.directory("{f}", function() end)))
        log.info("RESULT nocb " .. try(function() watch.directory("{tmp_path}") end))
        log.info("RESULT badkey " .. try(function() watch.directory("{tmp_path}", {{recurse = true}}, print) end))
        log.info("RESULT badint " .. try(function() watch.directory("{tmp_path}", {{poll = true, poll_interval = 0}}, print) end))
        log.info("RESULT unknown " .. tostring(watch.unwatch("watch_999")))
    """
        }
    )
    missing = await proc.result("missing")
    assert missing == {"ok": False, "err": f"watch.directory: {tmp_path}/nope: no such directory"}
    assert (await proc.result("notdir"))["err"].endswith("file.txt: not a directory")
    assert "watch.directory: callback: expected function, got nil" in await proc.result("nocb")
    badkey = await proc.result("badkey")
    assert (
        "watch.directory: opts: unknown key 'recurse' (known: pattern, poll, poll_interval, recursive)"
        in badkey
    )
    assert "opts.poll_interval: expected a positive number" in await proc.result("badint")
    assert await proc.result("unknown") is False


def fs_write_plugin(d: Path) -> str:
    """fs.write of a new file, then over one that existed before the watch."""
    return f"""
assert(fs.write("{d}/hello.txt", "x"))
assert(fs.write("{d}/old.txt", "y"))
"""


@pytest.mark.parametrize(
    "opts", ["{}", "{poll = true, poll_interval = 0.05}"], ids=["native", "poll"]
)
async def test_saves_by_rename_are_reported_where_the_file_lands(hub, tmp_path: Path, opts: str):
    """fs.write, a rename into place, a replace and an editor-style save (temp file renamed
    over the target) are a create or modify at the final path; fs.write's temp is never seen."""
    d = tmp_path / "w"
    d.mkdir()
    (d / "old.txt").write_text("before the watch")
    proc = await hub(plugins={"w": plugin(d, opts) + fs_write_plugin(d)})
    assert await proc.result("started") is True
    # Two files: their events may arrive in either order (inotify pairs moves with a delay).
    pos = max(
        await next_event(proc, 0, {"kind": "create", "rel": "hello.txt"}),
        await next_event(proc, 0, {"kind": "modify", "rel": "old.txt"}),
    )
    # A rename into place from a temp file (new), and an editor-style save over a file.
    (d / "n.txt.tmp").write_text("z")
    os.rename(d / "n.txt.tmp", d / "n.txt")
    pos = await next_event(proc, pos, {"kind": "create", "rel": "n.txt"})
    (d / "old.txt~").write_text("saved")
    os.replace(d / "old.txt~", d / "old.txt")
    pos = await next_event(proc, pos, {"kind": "modify", "rel": "old.txt"})
    # A plain rename over an existing file replaces it: a modify at the target.
    (d / "other").write_text("o")
    pos = await next_event(proc, pos, {"kind": "create", "rel": "other"})
    os.replace(d / "other", d / "hello.txt")
    pos = await next_event(proc, pos, {"kind": "modify", "rel": "hello.txt"})
    (d / "end").write_text("e")
    await next_event(proc, pos, {"kind": "create", "rel": "end"})
    events = [json.loads(ln.split("RESULT ev ", 1)[1]) for ln in proc.lines if "RESULT ev " in ln]
    assert not [e for e in events if ".botster-" in e["rel"] or ".botster-" in (e.get("old") or "")]
    # Nothing was ever reported as a plain create of a file that was replaced.
    assert {"kind": "create", "rel": "old.txt"} not in [
        {"kind": e["kind"], "rel": e["rel"]} for e in events
    ]
