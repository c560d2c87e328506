"""The frame decoder: any split of valid frames decodes the same; bad headers are refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botster.base.errors import ProtocolError
from botster.base.framing import (
    BINARY,
    JSON,
    Frame,
    FrameDecoder,
    encode_frame,
    encode_json,
    encode_session,
    split_session,
)

frames = st.lists(
    st.tuples(st.sampled_from([1, 2, 3, 4, 5, 6]), st.binary(max_size=300)), max_size=20
)


@given(frames, st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50))
@settings(max_examples=300)
def test_any_chunking_yields_the_same_frames(items, cuts):
    stream = b"".join(encode_frame(t, p) for t, p in items)
    decoder = FrameDecoder()
    out: list[Frame] = []
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out.extend(decoder.feed(stream[pos : pos + step]))
        pos += step
        i += 1
    assert [(f.type, f.payload) for f in out] == items
    assert decoder.buffered == 0


@given(st.binary(max_size=2000))
@settings(max_examples=500)
def test_garbage_either_decodes_or_raises_protocol_error(data):
    decoder = FrameDecoder(max_frame=1024)
    try:
        for frame in decoder.feed(data):
            assert frame.type in (1, 2, 3, 4, 5, 6)
            assert len(frame.payload) < 1024
    except ProtocolError:
        pass


def test_zero_length_oversized_and_unknown_type_are_refused():
    with pytest.raises(ProtocolError, match="frame length 0"):
        list(FrameDecoder().feed(struct.pack("<IB", 0, 1)))
    with pytest.raises(ProtocolError, match="over the limit of 100"):
        list(FrameDecoder(max_frame=100).feed(struct.pack("<IB", 101, 1)))
    with pytest.raises(ProtocolError, match="unknown frame type 0x7f"):
        list(FrameDecoder().feed(struct.pack("<IB", 1, 0x7F)))


def test_oversized_frame_is_refused_before_its_payload_arrives():
    decoder = FrameDecoder(max_frame=1 << 20)
    with pytest.raises(ProtocolError):
        list(decoder.feed(struct.pack("<IB", (1 << 20) + 1, BINARY)))


@given(st.text(max_size=40), st.binary(max_size=100))
def test_session_payload_round_trip(sid, data):
    assert split_session(encode_session(sid, data)) == (sid, data)


def test_json_frame_must_hold_an_object():
    (frame,) = FrameDecoder().feed(encode_json({"type": "hello"}))
    assert frame.type == JSON and frame.json() == {"type": "hello"}
    (bad,) = FrameDecoder().feed(encode_frame(JSON, b"[1,2]"))
    with pytest.raises(ProtocolError, match="must hold an object"):
        bad.json()
    (broken,) = FrameDecoder().feed(encode_frame(JSON, b"{nope"))
    with pytest.raises(ProtocolError, match="not valid JSON"):
        broken.json()
    with pytest.raises(ProtocolError, match="shorter than its id length"):
        split_session(b"\x05")
    with pytest.raises(ProtocolError, match="shorter than its id"):
        split_session(b"\x05\x00ab")
    with pytest.raises(ProtocolError, match="not UTF-8"):
        split_session(b"\x01\x00\xff")


@given(frames, st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50))
@settings(max_examples=300)
def test_json_over_max_json_is_discarded_as_it_arrives_under_any_chunking(items, cuts):
    """Issue 10: an oversized JSON message is never held; a marker keeps its place."""
    limit = 100
    data = b"".join(encode_frame(t, p) for t, p in items)
    decoder = FrameDecoder(max_json=limit)
    got: list[Frame] = []
    pos = 0
    for cut in cuts * (len(data) // max(sum(cuts), 1) + 1):
        if pos >= len(data):
            break
        got += list(decoder.feed(data[pos : pos + cut]))
        assert decoder.buffered <= max(limit + 5, 305 + 5)
        pos += cut
    got += list(decoder.feed(data[pos:]))
    assert [(f.type, f.skipped) for f in got] == [
        (t, len(p) if t == JSON and len(p) > limit else 0) for t, p in items
    ]
    for f, (_, p) in zip(got, items, strict=True):
        # a discarded payload keeps (a prefix of) its head, for the request id
        assert p.startswith(f.payload) if f.skipped else f.payload == p
    assert not decoder.in_frame
