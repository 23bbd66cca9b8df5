"""Whole-message verdicts: the parts of a concatenated message meet in one place,
wait until all are here, and are judged as one message (docs/concatenation.md).

A part is a segment tied to its message by UDH IEI 0x00 (8-bit ref) or 0x08
(16-bit ref), or by the SAR TLVs; its message is keyed by (SMSC, source,
destination, ref, total). Parts of one message may come over any bind of any
worker: the worker that owns the key (`owner_of`, the same hash in every
worker) holds them, and the others forward theirs over the mesh.

A `HeldMessage` lives from its first part until its verdict:

    held ──(last part, or concat_hold from the first)──▶ judging ──(verdict)──▶ decided

While held or judging, every part that comes (a retry of a part already here
too) joins the message's `Riders` and gets the message's answer. Once decided,
the message's verdict is remembered for `policy.concat_window`, so a straggler
gets it at once (a tempfail is not remembered: the SMSC's retries of the parts
are judged again). The module is sans-I/O: it keeps parts and answers them
through their sessions (`Riders.respond`); the dispatcher judges
(smps._native.dispatch, which reads these types' fields in C).
"""

import zlib

from smps._native import pdu as codec
from smps._native import text

from smps._native.pending cimport OUTCOME_TEMPFAIL
from smps._native.session cimport respond

_UDHI = 0x40
_CONCAT_IES = (0x00, 0x08)
DECIDED_LIMIT = 100_000  # decided messages remembered for their stragglers


cpdef bint part_of(concat) except -1:
    """Is (ref, total, part) a part of a message worth holding? Malformed ones
    (total 1, part 0, part past the total) are judged as single messages."""
    return concat is not None and concat[1] >= 2 and 1 <= concat[2] <= concat[1]


def owner_of(tuple key, int workers):
    """The worker that holds the message ``key``: the same in every process
    (Python's own str hash differs from process to process)."""
    smsc, source, destination, ref, total = key
    digest = zlib.crc32(source + b"\0" + destination + b"\0" + smsc.encode())
    return (digest ^ (ref * 31 + total)) % workers


cdef class Riders:
    """The parts of one message, standing in for the session of the message's
    Original: answering it answers every part on the bind it came in on."""

    transport = None
    is_open = False  # for flow control: nothing to pause here (the parts' sessions are read)

    def __init__(self, tuple key):
        self.key = key
        self.parts = []  # the parts' Originals, in arrival order
        self.segments = []  # one PDU per part number, for `segments` accounts
        self.trace = None

    @property
    def smsc(self):
        return self.key[0]

    cpdef respond(self, bytes _pdu, int status):
        """Answer every part with ``status``; the first part's response (for the trace)."""
        first = None
        trace = self.trace
        for part in self.parts:
            response = respond(part.session, part.pdu, status)
            if first is None:
                first = response
            if trace is not None:
                trace.part_answered(part.concat[2], status, response)
        self.parts = []  # answered: a later part is a straggler
        return first


cdef class HeldMessage:
    """One message from its first part to its verdict."""

    def __init__(self, Riders riders, int total, double now, double wall):
        self.riders = riders
        self.total = total
        self.first_at = now
        self.first_wall = wall
        self.numbers = {}  # part number -> its first Original
        self.judging = False

    @property
    def complete(self):
        return len(self.numbers) == self.total


cdef class Assembly:
    """The messages held or being judged in one worker, and the verdicts of the
    decided ones for their stragglers. Dicts keep insertion order: `held` is by first
    arrival, `_decided` by decision (a key decided again moves to the end)."""

    def __init__(self):
        self.messages = {}  # held or judging, by key
        self.held = {}  # by first arrival
        self._decided = {}  # key -> (remembered until, outcome, status)
        self.configure(1.0, 100_000, 60.0)

    def configure(self, double hold, Py_ssize_t max_held, double window):
        self.hold = hold
        self.max_held = max_held
        self.window = window

    def __len__(self):
        return len(self.messages)

    cpdef HeldMessage add(self, tuple key, original, double now):
        """Take a part. Its message (held or judging) when it joined one; None when
        the part is not taken: the table is full, so it is judged alone."""
        cdef HeldMessage message = self.messages.get(key)
        if message is None:
            if len(self.messages) >= self.max_held:
                return None
            message = HeldMessage(Riders(key), key[4], now, original.arrived_wall)
            self.messages[key] = message
            self.held[key] = message
        message.riders.parts.append(original)
        message.numbers.setdefault(original.concat[2], original)
        return message

    cpdef take(self, tuple key):
        """The message goes to be judged: no longer waiting for parts."""
        cdef HeldMessage message = self.held.pop(key)
        message.judging = True

    def due(self, double now):
        """The keys of held messages whose hold ran out, oldest first."""
        cdef HeldMessage message
        due = []
        limit = now - self.hold
        for key, message in self.held.items():
            if message.first_at > limit:
                break
            due.append(key)
        return due

    cpdef decided(self, tuple key, int outcome, int status, double now):
        """The message was answered: its stragglers get the same answer for a while,
        unless it was a tempfail: the SMSC sends the message again, to be judged anew."""
        self.messages.pop(key, None)
        self.held.pop(key, None)
        if outcome == OUTCOME_TEMPFAIL:
            return
        decided = self._decided
        decided.pop(key, None)  # to the end
        decided[key] = (now + self.window, outcome, status)
        while decided and (len(decided) > DECIDED_LIMIT or next(iter(decided.values()))[0] <= now):
            del decided[next(iter(decided))]

    cpdef tuple verdict_of(self, tuple key, double now):
        """(outcome, status) of a decided message still remembered."""
        found = self._decided.get(key)
        if found is None or found[0] <= now:
            return None
        return found[1], found[2]


def whole_pdu(HeldMessage message, tuple alphabet):
    """One deliver_sm (or data_sm) carrying the whole message: the first part's
    fields, its UDH without the concatenation element (none left: no UDH, UDHI
    cleared), and every part's user data in order in message_payload. A missing
    part is left out (the record says which)."""
    parts = message.numbers
    numbers = sorted(parts)
    view = parts[numbers[0]].view
    header = b""
    if view.esm_class & _UDHI:
        # Each part's UDH parsed when it came (it named the part): UDHL + 1 octets.
        header = _udh_without_concat(text.parse_udh(view.user_data))
        payload = b"".join([data[data[0] + 1 :] for data in
                            [parts[n].view.user_data for n in numbers]])  # fmt: skip
    else:
        payload = b"".join([parts[n].view.user_data for n in numbers])
    if alphabet[1]:  # packed GSM 7-bit from this SMSC: join septets, not octets
        payload = _repacked(message, numbers, view, header, alphabet) or payload
    esm_class = view.esm_class & ~_UDHI | (_UDHI if header else 0)
    return codec.with_user_data(view, header + payload, esm_class)


def _udh_without_concat(udh):
    """The UDH's other elements (ports, language shifts...) as a UDH, or b""."""
    ies = udh.ies
    if len(ies) == 1:  # the concatenation element alone, the usual case
        return b""
    body = b"".join([bytes((iei, len(data))) + data for iei, data in ies
                     if iei not in _CONCAT_IES])  # fmt: skip
    return bytes((len(body),)) + body if body else b""


def _repacked(HeldMessage message, list numbers, view, bytes header, tuple alphabet):
    """Packed GSM 7-bit parts cannot be joined octet by octet (each part's septets
    start after its own UDH's fill bits): decode the whole, pack it again. None
    when the parts are not GSM 7-bit (data_coding says otherwise)."""
    decoded = text.reassemble(
        [(n, message.numbers[n].view.user_data) for n in numbers],
        view.data_coding,
        view.esm_class,
        default_alphabet=alphabet[0],
        gsm7_packed=True,
    )
    if decoded.encoding != "gsm7-packed":
        return None
    fill = (7 - (len(header) * 8) % 7) % 7 if header else 0
    udh = decoded.udh
    return text.gsm7_encode(
        decoded.text,
        packed=True,
        fill_bits=fill,
        single_shift=udh.single_shift if udh is not None else 0,
        locking_shift=udh.locking_shift if udh is not None else 0,
    )
