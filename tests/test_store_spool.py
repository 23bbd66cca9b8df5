"""The writer's on-disk FIFO: order, limits, reopening, torn writes, push_front."""

from smps.store.spool import Spool


def drain(spool: Spool) -> list[bytes]:
    out = []
    while (frame := spool.peek()) is not None:
        out.append(frame)
        spool.pop()
    return out


def test_frames_come_back_in_order_across_segments(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=64)
    frames = [f"batch {i}".encode() * 3 for i in range(50)]
    for frame in frames:
        assert spool.append(frame)
    assert len(list(tmp_path.glob("*.spool"))) > 1
    assert len(spool) == 50
    assert drain(spool) == frames
    assert len(spool) == 0 and spool.bytes == 0
    assert len(list(tmp_path.glob("*.spool"))) <= 1


def test_peek_without_pop_returns_the_same_frame(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(b"one")
    spool.append(b"two")
    assert spool.peek() == b"one"
    assert spool.peek() == b"one"
    spool.pop()
    assert spool.peek() == b"two"


def test_full_spool_refuses_without_writing(tmp_path):
    spool = Spool(tmp_path, max_bytes=100)
    assert spool.append(b"x" * 50)
    assert not spool.append(b"y" * 50)
    assert len(spool) == 1
    assert drain(spool) == [b"x" * 50]


def test_reopened_spool_resumes_after_the_last_pop(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=40)
    for i in range(10):
        spool.append(str(i).encode() * 10)
    for _ in range(4):
        spool.peek()
        spool.pop()
    again = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=40)
    assert len(again) == 6
    assert drain(again) == [str(i).encode() * 10 for i in range(4, 10)]


def test_torn_frame_at_the_end_is_skipped(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(b"whole")
    segment = next(tmp_path.glob("*.spool"))
    with open(segment, "ab") as stream:
        stream.write(b"\x00\x00\x01\x00\x12\x34")  # a header and no payload: a crash mid-write
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert again.peek() == b"whole"
    again.pop()
    assert again.peek() is None
    again.append(b"after")
    assert drain(again) == [b"after"]


def test_push_front_goes_before_everything_spooled(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    for frame in (b"s1", b"s2", b"s3"):
        spool.append(frame)
    spool.peek()
    spool.pop()  # s1 consumed: the head segment has a read offset
    assert spool.push_front([b"m1", b"m2"]) == 2
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert drain(again) == [b"m1", b"m2", b"s2", b"s3"]


def test_push_front_into_an_empty_spool(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    assert spool.push_front([b"a", b"b"]) == 2
    spool.append(b"c")
    assert drain(spool) == [b"a", b"b", b"c"]
