"""A first-in first-out queue of byte frames on disk: writer batches the database could not take.

Layout: a directory of segment files named by a 20-digit sequence number; each
frame is ``length (4 bytes, big-endian) | crc32 (4) | payload``. Frames are
appended to the newest segment (a new one starts past ``segment_bytes``) and
read from the oldest; a fully read segment is deleted. :meth:`Spool.push_front`
writes a segment *before* the oldest one, so a writer that stops with batches
still in memory (older than anything spooled) keeps the order.

The read position is saved in ``position`` after every :meth:`Spool.pop`
without fsync: after a crash a few frames may be read again, which the writer's
batch ledger makes harmless. A torn frame at the end of a segment (a crash in
the middle of a write) is skipped with a warning.

Every method does blocking file I/O: call them from one dedicated thread.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

log = logging.getLogger("smps.store.spool")

_HEADER = struct.Struct(">II")
_SUFFIX = ".spool"
_FIRST_SEGMENT = 10**12  # room below for push_front


class Spool:
    """FIFO of frames in ``directory``; at most ``max_bytes`` on disk."""

    def __init__(
        self, directory: str | os.PathLike[str], max_bytes: int, segment_bytes: int = 8 << 20
    ):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._position_file = self.directory / "position"
        self._segments = sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}"))
        self._read_offset = 0
        self._load_position()
        self._bytes = sum(self._path(s).stat().st_size for s in self._segments) - self._read_offset
        self.frames = sum(self._count_frames(s) for s in self._segments)
        self._head: bytes | None = None
        self._head_size = 0

    # -------------------------------------------------------------------------- state

    @property
    def bytes(self) -> int:
        """Bytes of frames not yet popped."""
        return self._bytes

    def __len__(self) -> int:
        return self.frames

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:020d}{_SUFFIX}"

    def _load_position(self) -> None:
        try:
            segment, offset = (int(x) for x in self._position_file.read_text().split())
        except (OSError, ValueError):
            return
        # Anything else (a crash inside push_front) means reading from the start:
        # frames read twice are recognised by the writer's batch ledger.
        if self._segments and self._segments[0] == segment:
            self._read_offset = offset

    def _save_position(self) -> None:
        if self._segments:
            self._position_file.write_text(f"{self._segments[0]} {self._read_offset}")
        else:
            self._position_file.unlink(missing_ok=True)

    def _count_frames(self, segment: int) -> int:
        offset = self._read_offset if segment == self._segments[0] else 0
        count = 0
        with open(self._path(segment), "rb") as stream:
            stream.seek(offset)
            while self._read_frame(stream) is not None:
                count += 1
        return count

    # ------------------------------------------------------------------------- writing

    def _encode(self, payload: bytes) -> bytes:
        return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload

    def append(self, payload: bytes) -> bool:
        """Add a frame at the end; False (nothing written) when the spool is full."""
        frame = self._encode(payload)
        if self._bytes + len(frame) > self.max_bytes:
            return False
        if not self._segments or self._path(self._segments[-1]).stat().st_size >= (
            self.segment_bytes
        ):
            self._segments.append(self._segments[-1] + 1 if self._segments else _FIRST_SEGMENT)
        with open(self._path(self._segments[-1]), "ab") as stream:
            stream.write(frame)
        self._bytes += len(frame)
        self.frames += 1
        return True

    def push_front(self, payloads: list[bytes]) -> int:
        """Put frames before everything spooled, in the given order; returns how many fit."""
        frames = []
        room = self.max_bytes - self._bytes
        for payload in payloads:
            frame = self._encode(payload)
            if len(frame) > room:
                break
            frames.append(frame)
            room -= len(frame)
        if not frames:
            return 0
        if not self._segments:
            for frame in frames:
                self.append(frame[_HEADER.size :])
            return len(frames)
        segment = self._segments[0] - 1
        with open(self._path(segment), "wb") as stream:
            stream.writelines(frames)
            stream.flush()
            os.fsync(stream.fileno())
        # A read offset belongs to the first segment: drop the old head's consumed
        # prefix so the position can point at the new first segment.
        if self._read_offset:
            self._drop_consumed_prefix(self._segments[0], self._read_offset)
        self._segments.insert(0, segment)
        self._read_offset = 0
        self._save_position()
        self._head = None
        self._bytes += sum(len(frame) for frame in frames)
        self.frames += len(frames)
        return len(frames)

    def _drop_consumed_prefix(self, segment: int, offset: int) -> None:
        """Rewrite ``segment`` without its first ``offset`` bytes (already popped)."""
        path = self._path(segment)
        rest = path.read_bytes()[offset:]
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(rest)
        os.replace(temporary, path)

    # ------------------------------------------------------------------------- reading

    def _read_frame(self, stream) -> bytes | None:
        header = stream.read(_HEADER.size)
        if len(header) < _HEADER.size:
            if header:
                log.warning("spool %s: torn frame header at the end, skipped", stream.name)
            return None
        length, crc = _HEADER.unpack(header)
        payload = stream.read(length)
        if len(payload) < length or zlib.crc32(payload) != crc:
            log.warning("spool %s: torn or corrupt frame, rest of segment skipped", stream.name)
            return None
        return payload

    def peek(self) -> bytes | None:
        """The oldest frame, or None when the spool is empty. Stays until :meth:`pop`."""
        while self._head is None and self._segments:
            head = self._segments[0]
            with open(self._path(head), "rb") as stream:
                stream.seek(self._read_offset)
                payload = self._read_frame(stream)
            if payload is not None:
                self._head = payload
                self._head_size = _HEADER.size + len(payload)
            elif len(self._segments) == 1:
                # Tail of the only segment: more frames may be appended later.
                if self._path(head).stat().st_size > self._read_offset:
                    self._discard_segment()  # torn remainder: nothing more can follow it
                return None
            else:
                self._discard_segment()
        return self._head

    def pop(self) -> None:
        """Forget the frame :meth:`peek` returned."""
        if self._head is None:
            return
        self._read_offset += self._head_size
        self._bytes -= self._head_size
        self.frames -= 1
        self._head = None
        head = self._segments[0]
        if self._read_offset >= self._path(head).stat().st_size and len(self._segments) > 1:
            self._discard_segment()
        self._save_position()

    def _discard_segment(self) -> None:
        head = self._segments.pop(0)
        leftover = self._path(head).stat().st_size - self._read_offset
        self._bytes -= max(leftover, 0)
        self._path(head).unlink()
        self._read_offset = 0
        self._save_position()
