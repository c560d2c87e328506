"""The `log` primitive, end to end: levels, the `[plugin]` tag, numbers, refused arguments."""

from __future__ import annotations

from tests.lua_prelude import PRELUDE

LOGGER = (
    PRELUDE
    + r"""
log.debug("debug line")
log.info("info line")
log.warn("warn line")
log.error("error line")
log.info("error did not raise")
log.info(42)
log.info(-7)
log.info(1.5)
log.info(3.0)
log.info(2^53)
log.info(math.maxinteger)
log.info("utf-8 ✓ é")
timer.after(0, function() log.info("from a timer callback") end)
events.on("hub_ready", function() log.info("from an event listener") end)
report("errors", {
  table = raised(function() log.info({}); return 1 end),
  none = raised(function() log.warn(); return 1 end),
  boolean = raised(function() log.error(true); return 1 end),
  fn = raised(function() log.debug(print); return 1 end),
  wrong_door = raised(function() local v = log.warning; return v end),
})
"""
)


async def test_levels_tags_numbers_and_errors(hub):
    proc = await hub(
        plugins={"logp": LOGGER, "logq": "log.info('second plugin')"},
        env={"BOTSTER_LOG": "debug"},
    )
    proc.expect_log(r"ERROR plugin \[logp\] error line$")
    for pattern in (
        r"DEBUG plugin \[logp\] debug line$",
        r"INFO  plugin \[logp\] info line$",
        r"WARNING plugin \[logp\] warn line$",
        r"ERROR plugin \[logp\] error line$",
        r"INFO  plugin \[logp\] error did not raise$",
        r"plugin \[logp\] 42$",
        r"plugin \[logp\] -7$",
        r"plugin \[logp\] 1\.5$",
        r"plugin \[logp\] 3\.0$",
        r"plugin \[logp\] 9\.007199254741e\+15$",  # as Lua's tostring shows it
        r"plugin \[logp\] 9223372036854775807$",
        r"plugin \[logp\] utf-8 ✓ é$",
        r"INFO  plugin \[logp\] from a timer callback$",
        r"INFO  plugin \[logp\] from an event listener$",
        r"INFO  plugin \[logq\] second plugin$",
    ):
        await proc.wait_for(pattern)
    # The levels come out in the order they were logged.
    levels = [line for line in proc.lines if line.endswith(("debug line", "info line"))]
    assert [line.split()[1] for line in levels] == ["DEBUG", "INFO"]

    errors = await proc.result("errors")
    assert errors["table"].endswith("log.info: msg: expected string|number, got table")
    assert errors["none"].endswith("log.warn: msg: expected string|number, got nil")
    assert errors["boolean"].endswith("log.error: msg: expected string|number, got boolean")
    assert errors["fn"].endswith("log.debug: msg: expected string|number, got function")
    assert errors["wrong_door"].endswith("log.warning does not exist; use log.warn(msg)")
    for key, msg in errors.items():
        assert "logp/init.lua:" in msg, (key, msg)


async def test_debug_is_hidden_by_default(hub):
    proc = await hub(
        plugins={
            "quiet": """
            log.debug("hidden debug line")
            log.info("RESULT marker true")
            """
        }
    )
    # Flush: the marker was logged after the debug line, through the same path.
    assert await proc.result("marker") is True
    assert not any("hidden debug line" in line for line in proc.lines)
