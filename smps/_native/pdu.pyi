"""Type stub for the compiled SMPP PDU codec (smps/_native/pdu.pyx)."""

import enum
from collections.abc import Iterable, Iterator, Mapping

DEFAULT_MAX_LENGTH: int

class CommandId(enum.IntEnum):
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103
    BROADCAST_SM = 0x00000111
    BROADCAST_SM_RESP = 0x80000111
    QUERY_BROADCAST_SM = 0x00000112
    QUERY_BROADCAST_SM_RESP = 0x80000112
    CANCEL_BROADCAST_SM = 0x00000113
    CANCEL_BROADCAST_SM_RESP = 0x80000113

class Status(enum.IntEnum):
    ROK = 0x00
    RINVMSGLEN = 0x01
    RINVCMDLEN = 0x02
    RINVCMDID = 0x03
    RINVBNDSTS = 0x04
    RALYBND = 0x05
    RINVPRTFLG = 0x06
    RINVREGDLVFLG = 0x07
    RSYSERR = 0x08
    RINVSRCADR = 0x0A
    RINVDSTADR = 0x0B
    RINVMSGID = 0x0C
    RBINDFAIL = 0x0D
    RINVPASWD = 0x0E
    RINVSYSID = 0x0F
    RCANCELFAIL = 0x11
    RREPLACEFAIL = 0x13
    RMSGQFUL = 0x14
    RINVSERTYP = 0x15
    RINVNUMDESTS = 0x33
    RINVDLNAME = 0x34
    RINVDESTFLAG = 0x40
    RINVSUBREP = 0x42
    RINVESMCLASS = 0x43
    RCNTSUBDL = 0x44
    RSUBMITFAIL = 0x45
    RINVSRCTON = 0x48
    RINVSRCNPI = 0x49
    RINVDSTTON = 0x50
    RINVDSTNPI = 0x51
    RINVSYSTYP = 0x53
    RINVREPFLAG = 0x54
    RINVNUMMSGS = 0x55
    RTHROTTLED = 0x58
    RINVSCHED = 0x61
    RINVEXPIRY = 0x62
    RINVDFTMSGID = 0x63
    RX_T_APPN = 0x64
    RX_P_APPN = 0x65
    RX_R_APPN = 0x66
    RQUERYFAIL = 0x67
    RINVOPTPARSTREAM = 0xC0
    ROPTPARNOTALLWD = 0xC1
    RINVPARLEN = 0xC2
    RMISSINGOPTPARAM = 0xC3
    RINVOPTPARAMVAL = 0xC4
    RDELIVERYFAILURE = 0xFE
    RUNKNOWNERR = 0xFF
    RSERTYPUNAUTH = 0x100
    RPROHIBITED = 0x101
    RSERTYPUNAVAIL = 0x102
    RSERTYPDENIED = 0x103
    RINVDCS = 0x104
    RINVSRCADDRSUBUNIT = 0x105
    RINVDSTADDRSUBUNIT = 0x106

def command_name(command_id: int) -> str: ...
def is_response(command_id: int) -> bool: ...

class Framer:
    def __init__(self, max_length: int = 65536) -> None: ...
    @property
    def max_length(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def failed(self) -> bool: ...
    def feed(self, data: bytes | bytearray | memoryview) -> None: ...
    def next_pdu(self) -> bytes | None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...

def header(pdu: bytes) -> tuple[int, int, int, int]: ...

class Pdu:
    command_id: int
    command_status: int
    sequence: int
    fields: dict[str, int | bytes]
    tlvs: list[tuple[int, bytes]]
    def __init__(
        self,
        command_id: int,
        sequence: int,
        fields: Mapping[str, int | bytes] | None = None,
        tlvs: Iterable[tuple[int, bytes]] | None = None,
        command_status: int = 0,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    def tlv(self, tag: int) -> bytes | None: ...
    def encode(self) -> bytes: ...

def decode(pdu: bytes) -> Pdu: ...
def encode(
    command_id: int,
    sequence: int,
    fields: Mapping[str, int | bytes] | None = None,
    tlvs: Iterable[tuple[int, bytes]] = (),
    status: int = 0,
) -> bytes: ...
def make_resp(request: bytes, status: int = 0, message_id: bytes = b"") -> bytes: ...
def make_generic_nack(sequence: int, status: int) -> bytes: ...

class SmView:
    pdu: bytes
    command_id: int
    sequence: int
    source_addr_ton: int
    source_addr_npi: int
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    protocol_id: int  # 0 for data_sm, which has none
    registered_delivery: int
    data_coding: int
    @property
    def service_type(self) -> bytes: ...
    @property
    def source_addr(self) -> bytes: ...
    @property
    def destination_addr(self) -> bytes: ...
    @property
    def user_data(self) -> bytes: ...
    @property
    def udhi(self) -> bool: ...
    @property
    def message_type(self) -> int: ...
    @property
    def is_receipt(self) -> bool: ...
    @property
    def sar(self) -> tuple[int, int, int] | None: ...
    @property
    def receipted_message_id(self) -> bytes | None: ...
    @property
    def message_state(self) -> int | None: ...
    @property
    def tlvs(self) -> list[tuple[int, bytes]]: ...
    def tlv(self, tag: int) -> bytes | None: ...

def decode_sm(pdu: bytes) -> SmView: ...
def with_user_data(view: SmView, user_data: bytes, esm_class: int) -> bytes: ...
