"""Type stub for the compiled message-text codec (smps/_native/text.pyx)."""

from collections.abc import Iterable

GSM7_SINGLE: int
GSM7_PART: int
UCS2_SINGLE: int
UCS2_PART: int

class Udh:
    @property
    def length(self) -> int: ...
    @property
    def concat(self) -> tuple[int, int, int] | None: ...
    @property
    def ref_bits(self) -> int: ...
    @property
    def ports(self) -> tuple[int, int] | None: ...
    @property
    def single_shift(self) -> int: ...
    @property
    def locking_shift(self) -> int: ...
    @property
    def ies(self) -> list[tuple[int, bytes]]: ...

class Decoded:
    def __init__(
        self,
        text: str,
        encoding: str,
        udh: Udh | None = None,
        note: str = "",
        replaced: int = 0,
    ) -> None: ...
    @property
    def text(self) -> str: ...
    @property
    def encoding(self) -> str: ...
    @property
    def udh(self) -> Udh | None: ...
    @property
    def note(self) -> str: ...
    @property
    def replaced(self) -> int: ...

def parse_udh(user_data: bytes) -> Udh | None: ...
def decode(
    user_data: bytes,
    data_coding: int,
    esm_class: int = 0,
    *,
    default_alphabet: str = "gsm7",
    gsm7_packed: bool = False,
) -> Decoded: ...
def reassemble(
    parts: Iterable[tuple[int, bytes]],
    data_coding: int,
    esm_class: int = 0x40,
    *,
    default_alphabet: str = "gsm7",
    gsm7_packed: bool = False,
) -> Decoded: ...
def gsm7_encode(
    text: str,
    *,
    packed: bool = False,
    fill_bits: int = 0,
    single_shift: int = 0,
    locking_shift: int = 0,
) -> bytes: ...
def gsm7_decode(
    data: bytes,
    *,
    packed: bool = False,
    fill_bits: int = 0,
    single_shift: int = 0,
    locking_shift: int = 0,
    septets: int | None = None,
) -> tuple[str, int]: ...
def is_gsm7(text: str, *, single_shift: int = 0, locking_shift: int = 0) -> bool: ...
def gsm7_length(text: str, *, single_shift: int = 0, locking_shift: int = 0) -> int: ...
def ucs2_encode(text: str) -> bytes: ...
def ucs2_decode(data: bytes) -> tuple[str, int]: ...
def split(
    text: str, *, ref: int, packed: bool = False, max_single: int | None = None
) -> tuple[int, list[bytes]]: ...
def plain_text(
    user_data: bytes,
    data_coding: int,
    esm_class: int = 0,
    default_alphabet: str = "gsm7",
    gsm7_packed: bool = False,
) -> str | None: ...
