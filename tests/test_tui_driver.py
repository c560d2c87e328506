"""The UI's terminal driver (issue 12, latency): input read on the app's loop, output written
at once when nothing is queued, and neither loses or reorders a byte.

Input: a small real Textual app on ``RawInputDriver`` runs on a pseudo-terminal this test
types into, keys at gaps of 0, 20, 60 and 120 ms, escape sequences cut across writes
included; the bytes the app gets for the program must be the bytes typed, in order, read on
the loop and (for comparison) by Textual's input thread. Output: ``_Writer`` on a
pseudo-terminal nobody reads until its buffer is full, so direct writes become partial and
queued; what comes out must be every write in the order it was made.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
import tty
from pathlib import Path

import pytest

from botster.tui.rawinput import _Writer
from harness import wait_until

ROOT = Path(__file__).resolve().parent.parent

PROBE = r"""
import sys
from textual.app import App
from textual.widgets import Static
from botster.tui import rawinput

rawinput.LOOP_INPUT = sys.argv[3] == "loop"
out = open(sys.argv[1], "ab", buffering=0)


class Probe(App):
    def __init__(self):
        super().__init__(driver_class=rawinput.RawInputDriver)

    def compose(self):
        yield Static("probe")

    def on_mount(self):
        mode = "loop" if self._driver._reading_on_loop else "thread"
        open(sys.argv[2], "w").write(mode)

    def raw_keys(self):
        return True

    def raw_prefix(self):
        return [b"\x02"]

    def raw_input(self, data):
        out.write(data)

    def raw_paste(self, text):
        out.write(b"<paste:" + text + b">")

    def on_key(self, event):
        # After the prefix the keys are the UI's until it says it handled the next one.
        out.write(b"<key:" + event.key.encode() + b">")
        if event.key != "ctrl+b":
            self._driver.release_raw()


Probe().run()
"""

# Keys as a terminal sends them, one write each (gap 0: all in one write).
KEYS = [
    b"\x1b",
    b":",
    b"w",
    b"\r",
    b"\x1b[A",
    b"\x1bb",
    b"\x1b[",  # a CSI cut by the write: the rest follows
    b"1;5D",
    b"\xc3",  # a UTF-8 character cut in two
    b"\xa9",
    b"\x1b[200~pasted\x1b[201~",
    b"\x7f",
]
GAPS_MS = [0, 20, 60, 120]


class Probe:
    """The probe app on a pseudo-terminal of its own."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        self.got = tmp_path / f"{mode}.bin"
        self.got.write_bytes(b"")
        self.mode_file = tmp_path / f"{mode}.mode"
        script = tmp_path / "probe.py"
        script.write_text(PROBE)
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(self.got), str(self.mode_file), mode],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
        os.close(slave)
        self.screen = b""

    def drain(self) -> None:
        """Reads what the app drew (it must never block on a full terminal)."""
        while select.select([self.master], [], [], 0)[0]:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.screen = (self.screen + data)[-4000:]

    async def wait_for(self, data: bytes, what: str) -> None:
        def seen() -> bool:
            self.drain()
            return data in self.got.read_bytes()

        try:
            await wait_until(seen, what, timeout=20)
        except AssertionError as e:
            raise AssertionError(f"{e}; got {self.got.read_bytes()[-200:]!r}") from None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self.master)


@pytest.mark.parametrize("mode", ["loop", "thread"])
async def test_keys_arrive_byte_for_byte_at_every_gap(tmp_path: Path, mode: str):
    probe = Probe(tmp_path, mode)
    try:
        await wait_until(
            lambda: probe.drain() or probe.mode_file.exists(), "the probe to start", timeout=30
        )
        await wait_until(lambda: probe.mode_file.read_text(), "the probe's mode")
        assert probe.mode_file.read_text() == mode
        want = b""
        for n, gap in enumerate(GAPS_MS):
            if gap == 0:
                os.write(probe.master, b"".join(KEYS))
            else:
                for key in KEYS:
                    os.write(probe.master, key)
                    await asyncio.sleep(gap / 1000)  # the gap between keys is the stimulus
                    probe.drain()
            marker = b"#%d#" % n
            os.write(probe.master, marker)
            want += b"".join(KEYS).replace(b"\x1b[200~pasted\x1b[201~", b"<paste:pasted>") + marker
            await probe.wait_for(marker, f"the keys typed at {gap} ms gaps")
            assert probe.got.read_bytes() == want, f"{gap} ms gaps"
        # An escape sequence left unfinished was typed (alt+O): it goes on after a while.
        os.write(probe.master, b"\x1bO")
        await probe.wait_for(want + b"\x1bO", "the unfinished sequence")
        # The prefix hands the next key to the UI; Esc alone there becomes the escape key
        # once Textual's parser waited for more; then keys are the program's again.
        os.write(probe.master, b"\x02")
        await probe.wait_for(b"<key:ctrl+b>", "the prefix")
        os.write(probe.master, b"\x1b")
        await probe.wait_for(b"<key:escape>", "the UI's escape key")
        os.write(probe.master, b"z#end#")
        await probe.wait_for(b"z#end#", "keys after the UI key")
        assert probe.got.read_bytes() == want + b"\x1bO<key:ctrl+b><key:escape>z#end#"
    finally:
        probe.close()


def _raw_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave


def _read_until(fd: int, end: bytes, timeout: float = 20.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(end):
        left = deadline - time.monotonic()
        assert left > 0, f"never read {end!r}; got {len(got)} bytes ending {got[-80:]!r}"
        if select.select([fd], [], [], left)[0]:
            got += os.read(fd, 65536)
    return got


def test_direct_writes_never_overtake_queued_output():
    master, slave = _raw_pty()
    file = open(slave, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - closed below
    writer = _Writer(file)
    writer.start()
    try:
        assert writer._fd is not None, "a terminal gets a non-blocking descriptor"
        # Idle: written by the caller itself, at once.
        assert writer.write_now("now;")
        assert _read_until(master, b"now;") == b"now;"
        # Nobody reads: the terminal's buffer fills; the write it takes in part leaves the
        # rest to the thread (which blocks), and from then on nothing is written directly.
        written: list[str] = []
        for n in range(10_000):
            chunk = f"<{n:06d}>" + "x" * 4000
            assert writer.write_now(chunk)
            written.append(chunk)
            if writer._unwritten:
                break
        else:
            raise AssertionError("the terminal's buffer never filled")
        assert not writer.write_now("late;"), "written directly past queued output"
        writer.write("late;")  # as the caller does when it may not write directly
        writer.write("later;")
        got = _read_until(master, b"later;")
        assert got.decode() == "".join(written) + "late;later;"
        # Drained: direct again.
        deadline = time.monotonic() + 10
        while writer._unwritten:
            assert time.monotonic() < deadline, "the thread never reported its writes done"
            time.sleep(0.01)  # the thread's bookkeeping after its last flush
        assert writer.write_now("again;")
        assert _read_until(master, b"again;") == b"again;"
    finally:
        writer.stop()
        file.close()
        os.close(slave)
        os.close(master)
    assert writer._fd is None


def test_writes_to_a_pipe_keep_textuals_queue():
    read, write = os.pipe()
    file = open(write, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - closed below
    writer = _Writer(file)
    writer.start()
    try:
        assert not writer.write_now("direct"), "only a terminal is written directly"
        writer.write("queued")
        assert _read_until(read, b"queued") == b"queued"
    finally:
        writer.stop()
        file.close()
        os.close(read)
        os.close(write)
