"""The ``fs`` primitive, driven through Lua plugins in a real hub, plus a property test of
``fs.resolve_safe``'s core run in-process against a real tree with symlinks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botster.primitives.fs import _resolve_safe_blocking
from tests.lua_prelude import plugin as lua_plugin
from tests.lua_prelude import strip_position


def plugin(base: Path, body: str) -> str:
    """A plugin source with the prelude and `base`, the test's work directory, as a string."""
    return lua_plugin(body, base=str(base))


def temp_leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".botster-*.tmp")]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


# read / write -----------------------------------------------------------------------------------


async def test_write_read_round_trip_is_binary_safe_and_atomic(hub, base: Path) -> None:
    (base / "private.txt").write_bytes(b"old secret")
    (base / "private.txt").chmod(0o600)
    (base / "real.txt").write_bytes(b"before")
    (base / "link.txt").symlink_to("real.txt")
    proc = await hub(
        plugins={
            "p": plugin(
                base,
                r"""
local bin = {}
for i = 0, 255 do bin[#bin + 1] = string.char(i) end
bin = table.concat(bin) .. "\0tail\r\n"
report_all("w_text", fs.write(base .. "/a/b/c/text.txt", "hello\n"))
report_all("r_text", fs.read(base .. "/a/b/c/text.txt"))
report_all("w_bin", fs.write(base .. "/bin.dat", bin))
local back = fs.read(base .. "/bin.dat")
report_all("r_bin", #back, back == bin)
report_all("w_empty", fs.write(base .. "/empty", ""), fs.read(base .. "/empty"))
report_all("overwrite", fs.write(base .. "/private.txt", "new"), fs.read(base .. "/private.txt"))
report_all("through_link", fs.write(base .. "/link.txt", "after"))
local odd = base .. "/\255\254name"
report_all("odd_name", fs.write(odd, "x"), fs.read(odd))
local names = fs.listdir(base)  -- sorted by bytes: \255 comes last
report_all("odd_listed", names[#names] == "\255\254name", names[1])
""",
            )
        }
    )
    assert await proc.result("w_text") == [True]
    assert await proc.result("r_text") == ["hello\n"]
    assert await proc.result("w_bin") == [True]
    assert await proc.result("r_bin") == [256 + 7, True]
    assert await proc.result("w_empty") == [True, ""]
    assert await proc.result("overwrite") == [True, "new"]
    assert await proc.result("through_link") == [True]
    assert await proc.result("odd_name") == [True, "x"]
    assert await proc.result("odd_listed") == [True, "a"]

    assert (base / "a/b/c/text.txt").read_bytes() == b"hello\n"
    assert (base / "bin.dat").read_bytes() == bytes(range(256)) + b"\0tail\r\n"
    assert (base / "empty").read_bytes() == b""
    # An overwritten file keeps its permission bits.
    assert stat.S_IMODE((base / "private.txt").stat().st_mode) == 0o600
    # Writing through a symlink replaces the target, not the link.
    assert (base / "link.txt").is_symlink()
    assert (base / "real.txt").read_bytes() == b"after"
    assert (base / os.fsdecode(b"\xff\xfename")).read_bytes() == b"x"
    assert temp_leftovers(base) == []


# The failing world: nil, "fs.<op>: <object>: <reason> (<ERRNO>)" --------------------------------


async def test_failures_return_nil_and_a_message(hub, base: Path) -> None:
    (base / "file.txt").write_text("f")
    (base / "dir").mkdir()
    (base / "dir/inner.txt").write_text("i")
    (base / "emptydir").mkdir()
    (base / "dirlink").symlink_to("dir")
    proc = await hub(
        plugins={
            "p": plugin(
                base,
                r"""
report_all("read_missing", fs.read(base .. "/nope"))
report_all("read_dir", fs.read(base .. "/dir"))
report_all("read_nul", fs.read(base .. "/x\0y"))
report_all("write_dir", fs.write(base .. "/dir", "x"))
report_all("write_under_file", fs.write(base .. "/file.txt/x", "x"))
report_all("listdir_missing", fs.listdir(base .. "/nope"))
report_all("listdir_file", fs.listdir(base .. "/file.txt"))
report_all("stat_missing", fs.stat(base .. "/nope"))
report_all("mkdir_file", fs.mkdir(base .. "/file.txt"))
report_all("rmdir_missing", fs.rmdir(base .. "/nope"))
report_all("rmdir_file", fs.rmdir(base .. "/file.txt"))
report_all("rmdir_link", fs.rmdir(base .. "/dirlink"))
report_all("delete_missing", fs.delete(base .. "/nope"))
report_all("delete_nonempty", fs.delete(base .. "/dir"))
report_all("rename_missing", fs.rename(base .. "/nope", base .. "/new/place"))
report_all("copy_missing", fs.copy(base .. "/nope", base .. "/x"))
report_all("copy_dir_onto_existing", fs.copy(base .. "/dir", base .. "/emptydir"))
report_all("never_fail", fs.exists(base .. "/nope"), fs.is_dir(base .. "/nope"),
  fs.exists(base .. "/a\0b"), fs.is_dir(base .. "/file.txt"))
""",
            )
        }
    )
    b = str(base)

    async def fails(tag: str, message: str) -> None:
        assert await proc.result(tag) == [None, message]

    await fails("read_missing", f"fs.read: {b}/nope: no such file or directory (ENOENT)")
    await fails("read_dir", f"fs.read: {b}/dir: is a directory (EISDIR)")
    await fails("read_nul", f"fs.read: {b}/x\\0y: path contains a NUL byte (EINVAL)")
    await fails("write_dir", f"fs.write: {b}/dir: is a directory (EISDIR)")
    await fails("write_under_file", f"fs.write: {b}/file.txt/x: not a directory (ENOTDIR)")
    await fails("listdir_missing", f"fs.listdir: {b}/nope: no such file or directory (ENOENT)")
    await fails("listdir_file", f"fs.listdir: {b}/file.txt: not a directory (ENOTDIR)")
    await fails("stat_missing", f"fs.stat: {b}/nope: no such file or directory (ENOENT)")
    await fails("mkdir_file", f"fs.mkdir: {b}/file.txt: file exists (EEXIST)")
    await fails("rmdir_missing", f"fs.rmdir: {b}/nope: no such file or directory (ENOENT)")
    await fails("rmdir_file", f"fs.rmdir: {b}/file.txt: not a directory (ENOTDIR)")
    await fails("rmdir_link", f"fs.rmdir: {b}/dirlink: not a directory (ENOTDIR)")
    await fails("delete_missing", f"fs.delete: {b}/nope: no such file or directory (ENOENT)")
    await fails("delete_nonempty", f"fs.delete: {b}/dir: directory not empty (ENOTEMPTY)")
    await fails(
        "rename_missing",
        f"fs.rename: {b}/nope -> {b}/new/place: no such file or directory (ENOENT)",
    )
    await fails("copy_missing", f"fs.copy: {b}/nope -> {b}/x: no such file or directory (ENOENT)")
    await fails("copy_dir_onto_existing", f"fs.copy: {b}/dir -> {b}/emptydir: file exists (EEXIST)")
    assert await proc.result("never_fail") == [False, False, False, False]
    # Failures change nothing: no destination parents for a missing source, the tree intact.
    assert not (base / "new").exists()
    assert (base / "dir/inner.txt").read_text() == "i"
    assert (base / "dirlink").is_symlink()
    assert temp_leftovers(base) == []


# Wrong use raises, naming function, argument, expectation and what it got ----------------------


async def test_wrong_arguments_raise_at_the_callers_line(hub, base: Path) -> None:
    proc = await hub(
        plugins={
            "p": plugin(
                base,
                r"""
-- (not tail calls: a tail call drops the caller's frame, and with it the line)
report_all("positioned", raised(function() local r = fs.read(nil); return r end),
  raised(function() local r = fs.resolve_safe("/tmp", 5); return r end))
report_all("types", raised(fs.write, "/tmp/x", nil), raised(fs.write, "/tmp/x", 5),
  raised(fs.write, nil, "x"), raised(fs.exists, {}), raised(fs.is_dir, true), raised(fs.listdir),
  raised(fs.copy, "a"), raised(fs.copy, nil, "b"), raised(fs.stat, 1.5), raised(fs.mkdir, nil),
  raised(fs.rmdir, false), raised(fs.delete, print), raised(fs.rename, "a", nil),
  raised(fs.resolve_safe, nil, "x"), raised(fs.read, "a", "b"))
report_all("wrong_door", raised(function() local r = fs.read_bytes("x"); return r end),
  raised(function() local r = fs.nonsense; return r end))
""",
            )
        }
    )
    positioned = await proc.result("positioned")
    assert [strip_position(m) for m in positioned] == [
        "fs.read: path: expected string, got nil",
        "fs.resolve_safe: rel: expected string, got number",
    ]
    assert await proc.result("types") == [
        "fs.write: content: expected string, got nil",
        "fs.write: content: expected string, got number",
        "fs.write: path: expected string, got nil",
        "fs.exists: path: expected string, got table",
        "fs.is_dir: path: expected string, got boolean",
        "fs.listdir: path: expected string, got nil",
        "fs.copy: dst: expected string, got nil",
        "fs.copy: src: expected string, got nil",
        "fs.stat: path: expected string, got number",
        "fs.mkdir: path: expected string, got nil",
        "fs.rmdir: path: expected string, got boolean",
        "fs.delete: path: expected string, got function",
        "fs.rename: dst: expected string, got nil",
        "fs.resolve_safe: root: expected string, got nil",
        "fs.read: expected at most 1 argument, got 2",
    ]
    door, unknown = await proc.result("wrong_door")
    assert strip_position(door) == (
        "fs.read_bytes does not exist; use fs.read(path) (strings are binary-safe)"
    )
    assert "fs.nonsense does not exist (fs has: copy, delete, exists, is_dir, listdir" in unknown


# Directories, stat, copy, rename, delete --------------------------------------------------------


async def test_directory_operations(hub, base: Path) -> None:
    (base / "target.txt").write_bytes(b"12345")
    (base / "stat_link").symlink_to("target.txt")
    (base / "dangling").symlink_to("missing")
    (base / "victim").mkdir()
    (base / "victim/keep.txt").write_text("keep")
    (base / "tree/sub").mkdir(parents=True)
    (base / "tree/sub/f.txt").write_text("f")
    (base / "tree/link_out").symlink_to(base / "victim")
    (base / "dir_link").symlink_to("victim")
    proc = await hub(
        plugins={
            "p": plugin(
                base,
                r"""
report_all("mkdir", fs.mkdir(base .. "/t/a/b"), fs.mkdir(base .. "/t/a/b"),
  fs.is_dir(base .. "/t/a/b"))
fs.write(base .. "/t/z.txt", "zz")
fs.write(base .. "/t/m.txt", "m")
report_all("listdir", fs.listdir(base .. "/t"), fs.listdir(base .. "/t/a/b"))
report_all("stat", fs.stat(base .. "/target.txt"), fs.stat(base .. "/t/a"),
  fs.stat(base .. "/stat_link"), fs.stat(base .. "/dangling"))
report_all("exists", fs.exists(base .. "/t/z.txt"), fs.exists(base .. "/t/a"),
  fs.exists(base .. "/dangling"), fs.is_dir(base .. "/t/a"), fs.is_dir(base .. "/t/z.txt"),
  fs.is_dir(base .. "/dir_link"))
report_all("copy", fs.copy(base .. "/t/z.txt", base .. "/c/d/z2.txt"),
  fs.read(base .. "/c/d/z2.txt"),
  fs.copy(base .. "/target.txt", base .. "/c/d/z2.txt"), fs.read(base .. "/c/d/z2.txt"))
report_all("copy_tree", fs.copy(base .. "/t", base .. "/t2"), fs.listdir(base .. "/t2"),
  fs.listdir(base .. "/t2/a"))
report_all("rename", fs.rename(base .. "/t/m.txt", base .. "/r/s/m.txt"),
  fs.exists(base .. "/t/m.txt"), fs.read(base .. "/r/s/m.txt"))
report_all("rename_over", fs.rename(base .. "/t/z.txt", base .. "/r/s/m.txt"),
  fs.read(base .. "/r/s/m.txt"))
report_all("delete", fs.delete(base .. "/c/d/z2.txt"), fs.exists(base .. "/c/d/z2.txt"),
  fs.delete(base .. "/t/a/b"), fs.exists(base .. "/t/a/b"), fs.delete(base .. "/dir_link"))
report_all("rmdir", fs.rmdir(base .. "/tree"), fs.exists(base .. "/tree"),
  fs.rmdir(base .. "/t2"), fs.exists(base .. "/t2"))
""",
            )
        }
    )
    assert await proc.result("mkdir") == [True, True, True]
    assert await proc.result("listdir") == [["a", "m.txt", "z.txt"], []]

    file_st, dir_st, link_st, dangling_st = await proc.result("stat")
    real = os.stat(base / "target.txt")
    assert file_st == {
        "size": 5,
        "modified": pytest.approx(real.st_mtime, abs=1e-6),
        "is_dir": False,
        "is_file": True,
        "is_symlink": False,
        "mode": stat.S_IMODE(real.st_mode),
    }
    assert isinstance(file_st["modified"], float) and isinstance(file_st["size"], int)
    assert dir_st["is_dir"] and not dir_st["is_file"] and not dir_st["is_symlink"]
    assert dir_st["mode"] == stat.S_IMODE(os.stat(base / "t/a").st_mode)
    assert link_st["is_symlink"] and link_st["is_file"] and link_st["size"] == 5
    assert dangling_st["is_symlink"] and not dangling_st["is_file"] and not dangling_st["is_dir"]

    assert await proc.result("exists") == [True, True, False, True, False, True]
    assert await proc.result("copy") == [True, "zz", True, "12345"]
    assert await proc.result("copy_tree") == [True, ["a", "m.txt", "z.txt"], ["b"]]
    assert await proc.result("rename") == [True, False, "m"]
    assert await proc.result("rename_over") == [True, "zz"]
    assert await proc.result("delete") == [True, False, True, False, True]
    assert await proc.result("rmdir") == [True, False, True, False]
    # delete removed the link, not the directory; rmdir did not follow the link out of the tree.
    assert not (base / "dir_link").is_symlink()
    assert (base / "victim/keep.txt").read_text() == "keep"
    assert stat.S_IMODE((base / "r/s/m.txt").stat().st_mode) == stat.S_IMODE(
        (base / "target.txt").stat().st_mode
    )
    assert temp_leftovers(base) == []


# resolve_safe ------------------------------------------------------------------------------------


class Tree:
    """A real tree: `root` with files, subdirectories and symlinks pointing in and out."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.outside = base / "outside"
        r = self.root
        (r / "sub/deeper").mkdir(parents=True)
        (r / "sub/file.txt").write_text("in")
        (r / "file.txt").write_text("in")
        (r / "ü 日本").mkdir()
        self.outside.mkdir()
        (self.outside / "secret.txt").write_text("out")
        links = {
            "link_in": "sub",
            "link_in_abs": str(r / "sub"),
            "link_out": str(self.outside),
            "link_out_rel": "../outside",
            "link_root": ".",
            "link_parent": "..",
            "dangling_in": "not_yet",
            "dangling_out": "../outside/missing",
            "loop": "loop",
            "loop_a": "loop_b",
            "loop_b": "loop_a",
            "sub/up": "../..",
            "sub/side": "../file.txt",
        }
        for name, target in links.items():
            (r / name).symlink_to(target)
        (base / "root_link").symlink_to("root")
        self.canonical = os.path.realpath(r)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return Tree(tmp_path_factory.mktemp("resolve_safe"))


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


LINKS = st.sampled_from(
    ["link_in", "link_in_abs", "link_out", "link_out_rel", "link_root", "link_parent",
     "dangling_in", "dangling_out", "loop", "loop_a", "sub/up", "sub/side"]
)  # fmt: skip
SPECIAL = st.sampled_from(
    ["..", ".", "", "sub", "deeper", "file.txt", "ü 日本", "up", "side", "secret.txt",
     "outside", "root", "nope", "a\0b", "~", "\\", "...", " ", "..\\.."]
)  # fmt: skip
COMPONENT = st.one_of(LINKS, SPECIAL, st.text(max_size=6))
REL = st.one_of(
    st.builds(
        lambda lead, parts: lead + "/".join(parts),
        st.sampled_from(["", "", "", "./", "/"]),
        st.lists(COMPONENT, max_size=5),
    ),
    st.text(max_size=40),
)


@settings(max_examples=400, deadline=None, database=None)
@given(root_form=st.sampled_from(["plain", "link", "slash", "dot"]), rel=REL)
def test_resolve_safe_never_escapes_its_root(tree: Tree, root_form: str, rel: str) -> None:
    root = {
        "plain": str(tree.root),
        "link": str(tree.base / "root_link"),
        "slash": str(tree.root) + "/",
        "dot": str(tree.root) + "/./sub/..",
    }[root_form]
    path, err = _resolve_safe_blocking(root, rel)
    if path is None:
        assert isinstance(err, str) and err.startswith("fs.resolve_safe: ")
        return
    assert err is None
    assert inside(path, tree.canonical), (rel, path)
    # The answer is canonical, so using it cannot be redirected by a symlink either.
    assert inside(os.path.realpath(path), tree.canonical), (rel, path)
    if os.path.lexists(path):
        assert os.path.realpath(path) == path


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("sub/file.txt", "sub/file.txt"),
        ("", ""),
        (".", ""),
        ("./sub//deeper/", "sub/deeper"),
        ("link_root", ""),
        ("link_in/file.txt", "sub/file.txt"),
        ("link_in_abs/file.txt", "sub/file.txt"),
        ("sub/side", "file.txt"),
        ("ü 日本", "ü 日本"),
        ("new/dir/file.txt", "new/dir/file.txt"),
        ("dangling_in", "not_yet"),
        ("dangling_in/child", "not_yet/child"),
        ("file.txt/x", "file.txt/x"),
    ],
)
def test_resolve_safe_allows(tree: Tree, rel: str, expected: str) -> None:
    path, err = _resolve_safe_blocking(str(tree.root), rel)
    assert err is None
    assert path == os.path.join(tree.canonical, expected).rstrip("/")


@pytest.mark.parametrize(
    ("rel", "reason"),
    [
        ("../outside/secret.txt", "'..' is not allowed"),
        ("sub/../file.txt", "'..' is not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("a\0b", "path contains a NUL byte (EINVAL)"),
        ("link_out/secret.txt", "escapes the root"),
        ("link_out", "escapes the root"),
        ("link_out_rel/new.txt", "escapes the root"),
        ("link_parent", "escapes the root"),
        ("sub/up/outside", "escapes the root"),
        ("dangling_out", "escapes the root"),
        ("loop", "too many levels of symbolic links (ELOOP)"),
        ("loop_a/x", "too many levels of symbolic links (ELOOP)"),
    ],
)
def test_resolve_safe_refuses(tree: Tree, rel: str, reason: str) -> None:
    path, err = _resolve_safe_blocking(str(tree.root), rel)
    shown = rel.replace("\0", "\\0")
    assert path is None
    assert err.startswith(f"fs.resolve_safe: {shown}: {reason}"), err


def test_resolve_safe_root_must_be_a_directory(tree: Tree) -> None:
    missing = str(tree.base / "missing")
    assert _resolve_safe_blocking(missing, "x") == (
        None,
        f"fs.resolve_safe: {missing}: no such file or directory (ENOENT)",
    )
    a_file = str(tree.root / "file.txt")
    assert _resolve_safe_blocking(a_file, "") == (
        None,
        f"fs.resolve_safe: {a_file}: not a directory (ENOTDIR)",
    )
    assert _resolve_safe_blocking("/tmp\0x", "a")[0] is None


async def test_resolve_safe_through_lua(hub, tmp_path: Path) -> None:
    t = Tree(tmp_path / "tree")
    proc = await hub(
        plugins={
            "p": plugin(
                t.root,
                r"""
report_all("ok", fs.resolve_safe(base, "link_in/file.txt"), fs.resolve_safe(base, ""),
  fs.resolve_safe(base, "new/file"))
report_all("escape", fs.resolve_safe(base, "link_out/secret.txt"))
report_all("dotdot", fs.resolve_safe(base, "../outside"))
report_all("nul", fs.resolve_safe(base, "a\0b"))
local p = assert(fs.resolve_safe(base, "new/file"))
report_all("use", fs.write(p, "made"), fs.read(p))
""",
            )
        }
    )
    c = t.canonical
    assert await proc.result("ok") == [f"{c}/sub/file.txt", c, f"{c}/new/file"]
    assert await proc.result("escape") == [
        None,
        f"fs.resolve_safe: link_out/secret.txt: escapes the root {c}",
    ]
    assert await proc.result("dotdot") == [None, "fs.resolve_safe: ../outside: '..' is not allowed"]
    assert await proc.result("nul") == [
        None,
        "fs.resolve_safe: a\\0b: path contains a NUL byte (EINVAL)",
    ]
    assert await proc.result("use") == [True, "made"]
    assert (t.root / "new/file").read_text() == "made"
