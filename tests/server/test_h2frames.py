"""The header-block watch, with no loop: any frames, any split of their bytes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hubbub.server.h2frames import PREFACE, HeaderBlockWatch

FRAMES = st.lists(st.tuples(
    st.sampled_from([0x0, 0x1, 0x4, 0x6, 0x8, 0x9]),  # DATA HEADERS SETTINGS PING WINDOW_UPDATE CONT
    st.integers(0, 255),  # flags
    st.binary(max_size=40),  # payload (any bytes: a DATA payload may look like a frame)
), max_size=12)


def frame(kind: int, flags: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + b"\0\0\0\1" + payload


@given(FRAMES, st.lists(st.integers(1, 64), min_size=1, max_size=8))
def test_open_is_the_last_header_frames_end_flag(frames: list[tuple[int, int, bytes]],
                                                  cuts: list[int]) -> None:
    """After any bytes, the watch's answer is whether the last HEADERS or
    CONTINUATION frame so far lacked END_HEADERS."""
    stream = PREFACE + b"".join(frame(*f) for f in frames)
    expected = False
    for kind, flags, _ in frames:
        if kind in (0x1, 0x9):
            expected = not flags & 0x4
    watch = HeaderBlockWatch()
    i = 0
    while i < len(stream):
        step = cuts[i % len(cuts)]
        watch.feed(stream[i:i + step])
        i += step
    assert watch.open is expected
