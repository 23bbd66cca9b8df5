"""Type stub for the compiled latency histogram (smps/_native/histogram.pyx)."""

BUCKETS: tuple[float, ...]

class Histogram:
    total: float
    count: int
    def observe(self, seconds: float) -> None: ...
    @property
    def counts(self) -> list[int]: ...
