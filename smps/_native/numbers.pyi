"""Type stub for phone number normalisation (smps/_native/numbers.pyx)."""

SHORT_CODE_MAX: int
NATIONAL_MIN: int
E164_MAX: int
TON_UNKNOWN: int
TON_INTERNATIONAL: int
TON_NATIONAL: int
TON_ALPHANUMERIC: int

def normalise_address(addr: bytes, ton: int, npi: int, country_code: bytes) -> bytes: ...

SENDER: int
RECEIVER: int

class AddressGate:
    empty: bool
    def load(
        self,
        sender_raw: frozenset[bytes],
        sender_stems: frozenset[bytes],
        sender_stem: int,
        receiver_raw: frozenset[bytes],
        receiver_stems: frozenset[bytes],
        receiver_stem: int,
    ) -> None: ...
    def sides(self, source: bytes, destination: bytes) -> int: ...
