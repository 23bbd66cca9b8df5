"""Type stub for phone number normalisation (smps/_native/numbers.pyx)."""

SHORT_CODE_MAX: int
NATIONAL_MIN: int
E164_MAX: int
TON_UNKNOWN: int
TON_INTERNATIONAL: int
TON_NATIONAL: int
TON_ALPHANUMERIC: int

def normalise_address(addr: bytes, ton: int, npi: int, country_code: bytes) -> bytes: ...
