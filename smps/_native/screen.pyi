"""Type stub for the screening engine (smps/_native/screen.pyx)."""

from collections.abc import Iterable
from typing import Any

from smps._native.pdu import SmView
from smps._native.velocity import VelocityTable

ACTION_BLOCK: int
ACTION_ALLOW: int
ACTION_MONITOR: int
KIND_LIST: int
KIND_CONTENT: int
KIND_URL: int
KIND_SPECIAL: int
KIND_VELOCITY: int
KIND_FINGERPRINT: int
KEY_SOURCE: int
KEY_DESTINATION: int
KEY_PAIR: int
KEY_FINGERPRINT: int
SPECIAL_SILENT: int
SPECIAL_FLASH: int
SPECIAL_BINARY: int
SPECIAL_WAP_PUSH: int

class AddressSet:
    size: int
    def __init__(self, exact: Iterable[bytes], prefixes: Iterable[bytes]) -> None: ...
    def has(self, address: bytes) -> bool: ...

def key_hash(seed: int, key: bytes) -> int: ...
def find_domains(folded: str) -> list[str]: ...
def special_kinds(view: SmView) -> int: ...

class Rule:
    id: str
    kind: int
    action: int
    skip_ne: bool
    on_destination: bool
    def __init__(self, id: str, kind: int, action: int, **options: Any) -> None: ...

class Judgement:
    action: int
    rule: str
    skip_ne: bool
    fired: list[str]

class Engine:
    rules: tuple[Rule, ...]
    table: VelocityTable
    counts: list[int]
    screened: int
    nanoseconds: int
    def __init__(
        self,
        rules: Iterable[Rule],
        table: VelocityTable,
        country_code: bytes,
        *,
        database: Any = None,
        pattern_rules: Iterable[int] = (),
        alphabets: dict[str, tuple[str, bool]] | None = None,
    ) -> None: ...
    def __len__(self) -> int: ...
    def judge(
        self,
        view: SmView,
        smsc: str,
        now_ms: int,
        count: bool = True,
        text: str | None = None,
        text_fingerprint: int = 0,
    ) -> Judgement | None: ...
