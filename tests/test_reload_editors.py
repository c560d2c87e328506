"""Saving a plugin from an editor reloads it once: swap, backup and temporary files do not.

To know that a file change reloaded nothing, a sentinel plugin is touched afterwards: the
watcher reports changes in order and both debounce alike, so a reload the editor's files
caused would be logged before the sentinel's.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import write_plugin

PLUGIN = 'log.info("RESULT {tag} loaded")'


async def settle(proc, repo: Path, since: int, n: int) -> None:
    """Waits for the sentinel's n-th reload: every change made before it has been handled."""
    write_plugin(repo, "sentinel", PLUGIN.format(tag=f"sentinel{n}"))
    await proc.result(f"sentinel{n}", since=since)


async def test_editor_files_reload_nothing_and_a_save_reloads_once(hub, git_repo: Path):
    proc = await hub(plugins={"p": PLUGIN.format(tag="v1"), "sentinel": PLUGIN.format(tag="s")})
    await proc.result("v1")
    d = git_repo / ".botster" / "plugins" / "p"
    init = d / "init.lua"

    # Editors' files alone: created, changed, deleted.
    mark = proc.mark()
    junk = [".init.lua.swp", ".init.lua.swx", "init.lua~", "4913", "#init.lua#", ".#init.lua",
            "init.lua.tmp", "init.lua.bak", "init.lua.orig", "init.lua.swp",
            "init.lua___jb_tmp___"]  # fmt: skip
    for name in junk:
        (d / name).write_text("junk(")
    for name in junk:
        (d / name).write_text("more junk(")
        (d / name).unlink()
    await settle(proc, git_repo, mark, 1)
    assert proc.count(r"plugin 'p' (re)?loaded") == 1, "editor files reloaded the plugin"

    # vim's save (backupcopy=no): write test, backup by rename, write, drop the backup,
    # then the swap file is updated.
    for tag in ("v2", "v3"):
        mark = proc.mark()
        (d / "4913").write_text("")
        (d / "4913").unlink()
        os.rename(init, d / "init.lua~")
        init.write_text(PLUGIN.format(tag=tag))
        (d / "init.lua~").unlink()
        (d / ".init.lua.swp").write_bytes(b"b0VIM 9.0")
        await proc.result(tag, since=mark)
        await settle(proc, git_repo, mark, 2 if tag == "v2" else 3)
        assert proc.count(r"plugin 'p' reloaded") == (1 if tag == "v2" else 2)
        assert sum(f"RESULT {tag}" in line for line in proc.lines[mark:]) == 1
