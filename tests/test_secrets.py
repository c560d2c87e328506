"""The ``secrets`` primitive through Lua plugins in a real hub: round trips, what lands on
disk (no plaintext, modes), scoping per plugin, tampering, the key file, and wrong use."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from tests.lua_prelude import PRELUDE, strip_position

MARKER = "PLAINTEXT-MARKER-7f3a"
AUTH_FAILED = "stored value failed authentication (tampered, or written with another key)"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_round_trip_and_what_lands_on_disk(hub, isolated_env: dict[str, str]) -> None:
    home = Path(isolated_env["BOTSTER_HOME"])
    proc = await hub(
        plugins={
            "alpha": PRELUDE
            + f"""
local marker = "{MARKER}"
local bin = marker .. "\\0\\1\\2\\255\\254" .. string.rep("z", 100)
report_all("missing", secrets.get("token"))
report_all("set", secrets.set("token", bin))
local back = secrets.get("token")
report_all("get", back == bin, #back)
report_all("overwrite", secrets.set("token", marker .. "-v2"), secrets.get("token"))
report_all("dotted", secrets.set("other.key_2-X", marker), secrets.get("other.key_2-X"))
report_all("delete", secrets.delete("other.key_2-X"), secrets.delete("other.key_2-X"),
  secrets.get("other.key_2-X"))
report_all("limits", secrets.set("big", string.rep(marker, 4000):sub(1, 65536)),
  #secrets.get("big"), secrets.set("empty", ""), secrets.get("empty"))
""",
            "odd plugin%": PRELUDE + 'report_all("odd", secrets.set("k", "odd value"))',
        }
    )
    assert await proc.result("missing") == [None]
    assert await proc.result("set") == [True]
    assert await proc.result("get") == [True, len(MARKER) + 5 + 100]
    assert await proc.result("overwrite") == [True, MARKER + "-v2"]
    assert await proc.result("dotted") == [True, MARKER]
    assert await proc.result("delete") == [True, False, None]
    assert await proc.result("limits") == [True, 65536, True, ""]
    assert await proc.result("odd") == [True]

    key_file = home / "secrets.key"
    assert key_file.stat().st_size == 32
    assert mode(key_file) == 0o600
    root = home / "secrets"
    assert mode(root) == 0o700
    assert mode(root / "alpha") == 0o700
    assert sorted(p.name for p in (root / "alpha").iterdir()) == [
        "big.enc",
        "empty.enc",
        "token.enc",
    ]
    assert all(mode(p) == 0o600 for p in (root / "alpha").iterdir())
    # A plugin name that is not a plain file name gets an escaped directory of its own.
    assert (root / "odd%20plugin%25" / "k.enc").is_file()
    # Never plaintext on disk, anywhere under the home (temp files included).
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert MARKER.encode() not in data, path
            assert b"odd value" not in data, path


async def test_scoped_per_plugin_and_bound_to_owner_and_name(
    hub, isolated_env: dict[str, str]
) -> None:
    home = Path(isolated_env["BOTSTER_HOME"])
    user_init = home / "lua" / "user" / "init.lua"
    user_init.parent.mkdir(parents=True)
    user_init.write_text(PRELUDE + 'report_all("user", secrets.set("token", "user-token"))')
    proc = await hub(
        plugins={
            "alpha": PRELUDE
            + """
report_all("alpha", secrets.set("token", "alpha-token"), secrets.set("victim", "alpha-only"),
  secrets.set("tampered", "t"), secrets.set("short", "s"))
""",
            "beta": PRELUDE + 'report_all("beta", secrets.set("token", "beta-token"))',
        }
    )
    assert await proc.result("user") == [True]
    assert await proc.result("alpha") == [True, True, True, True]
    assert await proc.result("beta") == [True]
    await proc.stop_and_verify()

    root = home / "secrets"
    assert sorted(p.name for p in root.iterdir()) == ["alpha", "beta", "user"]
    # Attacks on the files, made while no hub runs:
    shutil.copy(root / "alpha/victim.enc", root / "beta/victim.enc")  # same name, other plugin
    shutil.copy(root / "alpha/victim.enc", root / "alpha/renamed.enc")  # same plugin, other name
    blob = bytearray((root / "alpha/tampered.enc").read_bytes())
    blob[-1] ^= 0x01
    (root / "alpha/tampered.enc").write_bytes(bytes(blob))
    (root / "alpha/short.enc").write_bytes(b"xx")

    user_init.write_text(
        PRELUDE + 'report_all("user2", secrets.get("token"), secrets.get("victim"))'
    )
    proc2 = await hub(
        plugins={
            "alpha": PRELUDE
            + """
report_all("alpha2", secrets.get("token"), secrets.get("victim"))
report_all("renamed", secrets.get("renamed"))
report_all("tampered", secrets.get("tampered"))
report_all("short", secrets.get("short"))
""",
            "beta": PRELUDE
            + """
report_all("beta2", secrets.get("token"), secrets.get("never_set"))
report_all("stolen", secrets.get("victim"))
""",
        }
    )
    assert await proc2.result("user2") == ["user-token", None]
    assert await proc2.result("alpha2") == ["alpha-token", "alpha-only"]
    assert await proc2.result("beta2") == ["beta-token", None]
    assert await proc2.result("stolen") == [None, f"secrets.get: victim: {AUTH_FAILED}"]
    assert await proc2.result("renamed") == [None, f"secrets.get: renamed: {AUTH_FAILED}"]
    assert await proc2.result("tampered") == [None, f"secrets.get: tampered: {AUTH_FAILED}"]
    assert await proc2.result("short") == [None, f"secrets.get: short: {AUTH_FAILED}"]
    await proc2.stop_and_verify()  # before the fixture re-checks the first hub (same repo)


async def test_a_key_file_others_can_read_is_refused(hub, isolated_env: dict[str, str]) -> None:
    home = Path(isolated_env["BOTSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    key_file = home / "secrets.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o644)
    proc = await hub(plugins={"p": PRELUDE + 'report_all("set", secrets.set("k", "v"))\n'})
    assert await proc.result("set") == [
        None,
        f"secrets.set: {key_file}: the key file has mode 0644, which lets others read it; "
        f"refusing to use it (if no one else has read it: chmod 600 {key_file})",
    ]
    assert mode(key_file) == 0o644  # reported, not silently "repaired"
    assert not (home / "secrets").exists()


async def test_wrong_arguments_raise(hub) -> None:
    proc = await hub(
        plugins={
            "p": PRELUDE
            + """
report_all("positioned", raised(function() local v = secrets.get(nil); return v end),
  raised(function() local ok = secrets.set("k", string.rep("x", 65537)); return ok end))
report_all("types", raised(secrets.get, "bad key!"), raised(secrets.get, ""),
  raised(secrets.set, string.rep("k", 129), "v"), raised(secrets.get, "../escape"),
  raised(secrets.set, "k", nil), raised(secrets.set, "k", 5), raised(secrets.set, nil, "v"),
  raised(secrets.delete, {}), raised(secrets.delete, "a/b"))
report_all("wrong_door", raised(function() local f = secrets.list; return f end))
report_all("nothing_written", fs.exists(config.data_dir() .. "/secrets"))
""",
        }
    )
    assert [strip_position(m) for m in await proc.result("positioned")] == [
        "secrets.get: key: expected string, got nil",
        "secrets.set: val: expected a string of at most 65536 bytes, got 65537 bytes",
    ]
    names = "expected 1-128 characters of A-Z a-z 0-9 _ . -"
    assert await proc.result("types") == [
        f"secrets.get: key: {names}, got 'bad key!'",
        f"secrets.get: key: {names}, got ''",
        f"secrets.set: key: {names}, got 129 characters",
        f"secrets.get: key: {names}, got '../escape'",
        "secrets.set: val: expected string, got nil",
        "secrets.set: val: expected string, got number",
        "secrets.set: key: expected string, got nil",
        "secrets.delete: key: expected string, got table",
        f"secrets.delete: key: {names}, got 'a/b'",
    ]
    assert strip_position((await proc.result("wrong_door"))[0]) == (
        "secrets.list does not exist; secrets cannot be listed; "
        "keep the names you use in config or in code"
    )
    assert await proc.result("nothing_written") == [False]
