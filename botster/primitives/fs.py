"""The ``fs`` primitive: files and directories for plugins, and ``fs.resolve_safe``.

Owns the twelve ``fs`` functions of the spec. Every one that touches the disk runs on the
hub's I/O pool (each waits: only the calling task is suspended, never the hub), through the
``_*_blocking`` functions of this module. Leaves watching to ``watch`` and JSON to ``json``.

Rules shared by every function:

* Paths are Lua strings. Names that are not UTF-8 survive unchanged (surrogate escapes), and a
  relative path is relative to the hub's working directory, so prefer absolute paths
  (``config.data_dir()``, a worktree path, ``fs.resolve_safe``).
* File content is a Lua string, binary-safe: ``fs.read`` returns the exact bytes on disk.
* A wrong argument type raises (``fs.read: path: expected string, got nil``). A failing world
  returns ``nil, err`` shaped ``fs.<op>: <path>: <reason> (<ERRNO>)``, for example
  ``fs.read: /nope: no such file or directory (ENOENT)``. Operations on two paths name both as
  ``<from> -> <to>``. A path containing a NUL byte fails as ``... (EINVAL)``.
* Functions that change the disk return ``true`` on success.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat as _stat
from collections.abc import Callable
from contextlib import suppress
from typing import Any, BinaryIO

from botster.base.paths import botster_home
from botster.lua.api import lua_api
from botster.primitives.context import HubContext

__all__ = ["LUA"]

Fail = tuple[None, str]

# Chunk size for copying; copies stream instead of loading whole files.
_COPY_CHUNK = 1 << 20


# Messages -------------------------------------------------------------------------------------


def _show(path: str) -> str:
    """A path as an error message shows it (a NUL byte would cut the Lua string short)."""
    return path.replace("\0", "\\0")


def _os_message(op: str, obj: str, e: OSError) -> str:
    """``fs.<op>: <obj>: <reason> (<ERRNO>)`` for an OSError."""
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list) and e.args[0]:
        # copytree collects (src, dst, why) triples; the first one explains the failure.
        first = e.args[0][0]
        why = first[2] if isinstance(first, tuple) and len(first) == 3 else first
        return f"fs.{op}: {_show(obj)}: {why}"
    reason = e.strerror or str(e) or type(e).__name__
    reason = reason[:1].lower() + reason[1:]
    code = errno.errorcode.get(e.errno) if isinstance(e.errno, int) else None
    return f"fs.{op}: {_show(obj)}: {reason}" + (f" ({code})" if code else "")


def _oserror(code: int, path: str, reason: str | None = None) -> OSError:
    """An OSError of the right subclass for `code` (as the OS itself would raise)."""
    return OSError(code, reason or os.strerror(code), path)


async def _call(hub: HubContext, op: str, obj: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Runs fn(*args) on the I/O pool; an OSError becomes ``nil, "fs.<op>: ..."``."""
    if any(isinstance(a, str) and "\0" in a for a in args):
        return None, f"fs.{op}: {_show(obj)}: path contains a NUL byte (EINVAL)"
    try:
        return await hub.run_blocking(fn, *args)
    except OSError as e:
        return None, _os_message(op, obj, e)


# Blocking cores -------------------------------------------------------------------------------


def _read_blocking(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _parent_of(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


def _in_home(path: str) -> bool:
    """Whether `path` lies under ``$BOTSTER_HOME``: what the hub creates there is private
    (directories 0700, files 0600), as ssh keeps ``~/.ssh``."""
    home = os.path.realpath(botster_home())
    return os.path.realpath(path).startswith(home + os.sep)


def _makedirs(path: str) -> None:
    """os.makedirs, but every directory it creates under ``$BOTSTER_HOME`` is 0700 (makedirs
    gives its mode to the last one only)."""
    if not _in_home(path):
        os.makedirs(path, exist_ok=True)
        return
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for p in reversed(missing):
        with suppress(FileExistsError):
            os.mkdir(p, 0o700)
        if not os.path.isdir(p):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), p)


def _make_parents(path: str) -> None:
    """Creates the missing parent directories of `path` (0700 under ``$BOTSTER_HOME``)."""
    try:
        _makedirs(_parent_of(path))
    except FileExistsError:
        # Some "parent" is a file: say so the way open() would.
        raise _oserror(errno.ENOTDIR, path) from None


# fs.write's temp files (see _atomic_write_blocking); watch hides them.
TEMP_NAME = re.compile(r"\.botster-[0-9a-f]{12}\.tmp\Z")


def _atomic_write_blocking(target: str, fill: Callable[[BinaryIO], None], mode: int | None) -> None:
    """Writes `target` through a temp file in its directory, fsynced, then renamed over it.

    Args:
        target: the final path (parents must exist).
        fill: writes the content into the open temp file.
        mode: permission bits for the result; None = a new file's default (0666 & ~umask).
    """
    # The name is TEMP_NAME: watch never reports this file, only the rename into place.
    tmp = os.path.join(_parent_of(target), f".botster-{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # before any byte is written: never looser than the original
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _existing_mode(path: str) -> int | None:
    try:
        return _stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _write_blocking(path: str, content: bytes) -> bool:
    # Writing through a symlink updates the file it points to, as open() would; the rename
    # would otherwise replace the link itself.
    target = os.path.realpath(path) if os.path.islink(path) else path
    _make_parents(target)
    mode = _existing_mode(target)
    if mode is None and _in_home(target):
        mode = 0o600
    _atomic_write_blocking(target, lambda f: f.write(content), mode)
    return True


def _copy_blocking(src: str, dst: str) -> bool:
    if os.path.isdir(src):
        if os.path.lexists(dst):
            raise _oserror(errno.EEXIST, dst)
        _make_parents(dst)
        shutil.copytree(src, dst, symlinks=True)
        return True
    with open(src, "rb") as source:
        mode = _stat.S_IMODE(os.fstat(source.fileno()).st_mode)
        target = os.path.realpath(dst) if os.path.islink(dst) else dst
        _make_parents(target)
        _atomic_write_blocking(target, lambda f: shutil.copyfileobj(source, f, _COPY_CHUNK), mode)
    return True


def _stat_blocking(path: str) -> dict[str, Any]:
    st = os.lstat(path)
    is_link = _stat.S_ISLNK(st.st_mode)
    if is_link:
        # A link reports what it points to; a dangling link reports itself.
        with suppress(OSError):
            st = os.stat(path)
    return {
        "size": st.st_size,
        "modified": st.st_mtime,
        "is_dir": _stat.S_ISDIR(st.st_mode),
        "is_file": _stat.S_ISREG(st.st_mode),
        "is_symlink": is_link,
        "mode": _stat.S_IMODE(st.st_mode),
    }


def _listdir_blocking(path: str) -> list[bytes]:
    # Bytes names: exact, and sorted the way the bytes sort (UTF-8 order = code point order).
    return sorted(os.listdir(os.fsencode(path)))


def _mkdir_blocking(path: str) -> bool:
    _makedirs(path)
    return True


def _rmdir_blocking(path: str) -> bool:
    st = os.lstat(path)
    if not _stat.S_ISDIR(st.st_mode):
        # A symlink to a directory is refused too: rmdir never follows a link into a tree.
        raise _oserror(errno.ENOTDIR, path)
    if os.path.realpath(path) == "/":
        raise _oserror(errno.EPERM, path, "refusing to remove the filesystem root")
    shutil.rmtree(path)
    return True


def _delete_blocking(path: str) -> bool:
    st = os.lstat(path)
    if _stat.S_ISDIR(st.st_mode):
        os.rmdir(path)  # ENOTEMPTY for a non-empty directory: that is fs.rmdir's job
    else:
        os.unlink(path)
    return True


def _rename_blocking(src: str, dst: str) -> bool:
    os.lstat(src)  # a missing source fails before any destination directory is created
    _make_parents(dst)
    os.rename(src, dst)
    return True


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _resolve_safe_blocking(root: str, rel: str) -> tuple[str, None] | Fail:
    """The core of ``fs.resolve_safe``: (canonical path, None) or (None, message).

    Rules, in order: a NUL byte in either argument, an absolute `rel` and any ``..`` component
    are refused outright; `root` must be an existing directory and is canonicalised; ``.`` and
    empty components are ignored; the joined path is canonicalised (every symlink resolved,
    existing or in a parent; a symlink loop is refused); for a path that does not exist yet,
    its nearest existing ancestor is resolved and the rest appended. The result must be the
    canonical root or lie under it.
    """
    op = "fs.resolve_safe"
    if "\0" in root:
        return None, f"{op}: {_show(root)}: root contains a NUL byte (EINVAL)"
    if "\0" in rel:
        return None, f"{op}: {_show(rel)}: path contains a NUL byte (EINVAL)"
    if rel.startswith("/"):
        return None, f"{op}: {rel}: absolute paths are not allowed"
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, f"{op}: {rel}: '..' is not allowed"
    try:
        base = os.path.realpath(root, strict=True)
    except OSError as e:
        return None, _os_message("resolve_safe", root, e)
    if not os.path.isdir(base):
        return None, _os_message("resolve_safe", root, _oserror(errno.ENOTDIR, root))
    joined = os.path.join(base, *parts)
    try:
        resolved = os.path.realpath(joined, strict=True)
    except (FileNotFoundError, NotADirectoryError):
        # Not there (yet): the existing prefix is resolved, the missing rest appended.
        resolved = os.path.realpath(joined)
    except OSError as e:  # a symlink loop (ELOOP), an unreadable directory (EACCES)
        return None, _os_message("resolve_safe", rel, e)
    if not _inside(resolved, base):
        return None, f"{op}: {rel}: escapes the root {base}"
    return resolved, None


# The Lua-facing functions ---------------------------------------------------------------------


@lua_api
async def read(hub: HubContext, path: str) -> bytes | Fail:
    """fs.read(path) -> string | nil, err

    Returns the whole content of the file at `path`, byte for byte (binary-safe).
    Returns nil, err when it cannot be read (missing, a directory, no permission).
    Raises when `path` is not a string.
    Example: ``local text, err = fs.read("/tmp/notes.txt"); if not text then log.warn(err) end``
    """
    return await _call(hub, "read", path, _read_blocking, path)


@lua_api
async def write(hub: HubContext, path: str, content: bytes) -> bool | Fail:
    """fs.write(path, content) -> true | nil, err

    Replaces the file at `path` with `content` (a string, binary-safe), atomically: the bytes
    go to a temp file in the same directory, are flushed to disk, then renamed over `path`, so
    readers see the old or the new content, never a mix. Missing parent directories are
    created. An existing file keeps its permission bits; a symlink is written through (the file
    it points to is replaced). Hard links to the old file keep the old content.
    Returns nil, err on failure (the old file is untouched). Raises on non-string arguments.
    Example: ``assert(fs.write(config.data_dir() .. "/my_plugin/state.json", json.encode(t)))``
    """
    return await _call(hub, "write", path, _write_blocking, path, content)


@lua_api
async def exists(hub: HubContext, path: str) -> bool:
    """fs.exists(path) -> bool

    Whether something exists at `path` (file, directory, ...). Follows symlinks: a dangling
    link does not exist (``fs.stat`` still describes it). Never fails: an unreadable path is
    false. Example: ``if not fs.exists(dir) then fs.mkdir(dir) end``
    """
    if "\0" in path:
        return False
    return await hub.run_blocking(os.path.exists, path)


@lua_api
async def is_dir(hub: HubContext, path: str) -> bool:
    """fs.is_dir(path) -> bool

    Whether `path` is a directory (or a symlink to one). Never fails: anything else, missing
    or unreadable is false. Example: ``if fs.is_dir(p) then ... end``
    """
    if "\0" in path:
        return False
    return await hub.run_blocking(os.path.isdir, path)


@lua_api
async def listdir(hub: HubContext, path: str) -> list[bytes] | Fail:
    """fs.listdir(path) -> {name, ...} | nil, err

    The names in directory `path` (not "." or ".."), sorted by byte value; an empty directory
    gives an empty array (``json.encode`` writes ``[]``). Names only, not full paths.
    Returns nil, err if `path` is missing or not a directory.
    Example: ``for _, name in ipairs(fs.listdir(dir)) do log.info(name) end``
    """
    return await _call(hub, "listdir", path, _listdir_blocking, path)


@lua_api
async def copy(hub: HubContext, src: str, dst: str) -> bool | Fail:
    """fs.copy(src, dst) -> true | nil, err

    Copies a file: `dst` is replaced atomically (like fs.write) with the content and permission
    bits of `src`; missing parents of `dst` are created. A directory `src` is copied
    recursively (symlinks inside are copied as symlinks) to a `dst` that must not exist yet.
    Returns nil, err on failure, naming ``src -> dst``.
    Example: ``fs.copy(template, worktree .. "/.env")``
    """
    return await _call(hub, "copy", f"{src} -> {dst}", _copy_blocking, src, dst)


@lua_api
async def stat(hub: HubContext, path: str) -> dict[str, Any] | Fail:
    """fs.stat(path) -> {size, modified, is_dir, is_file, is_symlink, mode} | nil, err

    size: bytes (integer); modified: last modification, seconds since the epoch (float);
    is_dir / is_file: what the path is after following symlinks; is_symlink: whether the path
    itself is a symlink; mode: the permission bits as an integer (0644 -> 420). A symlink is
    described by its target; a dangling one by the link itself (is_file and is_dir false).
    A missing path returns nil, err (D4).
    Example: ``local st = fs.stat(p); if st then log.info(st.size) end``
    """
    return await _call(hub, "stat", path, _stat_blocking, path)


@lua_api
async def mkdir(hub: HubContext, path: str) -> bool | Fail:
    """fs.mkdir(path) -> true | nil, err

    Creates directory `path` and any missing parents. An existing directory is fine (true);
    an existing file at `path` is an error (EEXIST). Example: ``fs.mkdir(dir .. "/a/b/c")``
    """
    return await _call(hub, "mkdir", path, _mkdir_blocking, path)


@lua_api
async def rmdir(hub: HubContext, path: str) -> bool | Fail:
    """fs.rmdir(path) -> true | nil, err

    Removes directory `path` RECURSIVELY: everything inside it goes too, like ``rm -r``.
    `path` must be a directory; a file or a symlink (even to a directory) is refused with
    ENOTDIR, and symlinks inside the tree are removed, never followed. The filesystem root is
    refused. On failure part of the tree may already be gone. For a file or an empty
    directory, use fs.delete. Example: ``fs.rmdir(cache_dir)``
    """
    return await _call(hub, "rmdir", path, _rmdir_blocking, path)


@lua_api
async def delete(hub: HubContext, path: str) -> bool | Fail:
    """fs.delete(path) -> true | nil, err

    Removes a file, a symlink (not what it points to) or an EMPTY directory. A non-empty
    directory is an error (ENOTEMPTY): use fs.rmdir to remove a tree. A missing path is an
    error (ENOENT). Example: ``local ok, err = fs.delete(tmp_file)``
    """
    return await _call(hub, "delete", path, _delete_blocking, path)


@lua_api
async def rename(hub: HubContext, src: str, dst: str) -> bool | Fail:
    """fs.rename(src, dst) -> true | nil, err

    Moves `src` to `dst` (the spec's ``from, to``), creating missing parents of `dst`. An
    existing file at `dst` is replaced atomically; an existing non-empty directory is not
    (ENOTEMPTY). Across filesystems it fails with EXDEV (copy then delete instead).
    Returns nil, err naming ``src -> dst``. Example: ``fs.rename(tmp, final)``
    """
    return await _call(hub, "rename", f"{src} -> {dst}", _rename_blocking, src, dst)


@lua_api
async def resolve_safe(hub: HubContext, root: str, rel: str) -> str | Fail:
    """fs.resolve_safe(root, rel) -> path | nil, err

    Turns an untrusted relative path into a canonical absolute path that is guaranteed to be
    inside `root` (an existing directory), or returns nil, err. Refused: a NUL byte, an
    absolute `rel`, any ``..`` component (even one that would stay inside), a symlink loop,
    and any symlink (at the end or in a parent) that resolves outside the canonical root.
    ``.`` and empty components are ignored, so ``""``, ``"."`` and ``"a//b/"`` are fine; a
    `rel` that resolves to the root itself returns the canonical root. The target need not
    exist: a new path is allowed when its nearest existing ancestor resolves inside `root`.
    It checks the tree as it is now: a tree that another process changes between this check
    and the use of the path is not protected against.
    Example: ``local p, err = fs.resolve_safe(worktree, msg.path); if p then fs.read(p) end``
    """
    path, err = await hub.run_blocking(_resolve_safe_blocking, root, rel)
    return (None, err) if path is None else path


LUA = {
    "read": read,
    "write": write,
    "exists": exists,
    "is_dir": is_dir,
    "listdir": listdir,
    "copy": copy,
    "stat": stat,
    "mkdir": mkdir,
    "rmdir": rmdir,
    "delete": delete,
    "rename": rename,
    "resolve_safe": resolve_safe,
}
WRONG_DOOR = {
    "read_bytes": "use fs.read(path) (strings are binary-safe)",
    "read_file": "use fs.read(path)",
    "write_file": "use fs.write(path, content)",
    "append": "read, concatenate and fs.write(path, content) (writes are atomic)",
    "list_dir": "use fs.listdir(path)",
    "ls": "use fs.listdir(path)",
    "remove": "use fs.delete(path) for a file or empty directory, fs.rmdir(path) for a tree",
    "unlink": "use fs.delete(path)",
    "rm": "use fs.delete(path), or fs.rmdir(path) for a tree",
    "move": "use fs.rename(src, dst)",
    "mv": "use fs.rename(src, dst)",
    "makedirs": "use fs.mkdir(path) (it creates parents)",
    "mkdir_p": "use fs.mkdir(path) (it creates parents)",
    "isdir": "use fs.is_dir(path)",
    "is_file": "use fs.stat(path).is_file",
    "realpath": "use fs.resolve_safe(root, rel)",
}
