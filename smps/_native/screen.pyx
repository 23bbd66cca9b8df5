# cython: language_level=3
"""The screening engine's per-message work: the rules SMPS judges on its own.

`smps.proxy.screening` compiles the configured rules into an `Engine`; the
dispatcher calls ``Engine.judge`` once per original, before any copy goes to an
NE. No I/O, no await, no allocation beyond the message's own text: a message
that no rule concerns costs a few set lookups.

The parts (docs/architecture.md §8):

* `AddressSet`: exact numbers, prefixes and alphanumeric sender IDs, matched
  against a normalised address (``trace.country_code``, `normalise_address`):
  one set lookup per distinct prefix length, whatever the number of entries.
* content: every keyword and regular expression of every rule in one Hyperscan
  database, scanned once over the case-folded text (UTF-8).
* `find_domains`: the domains in a text (``http://``, ``hxxp://``, no scheme,
  ``bad[.]example``), matched by suffix against each URL rule's set.
* `smps._native.fingerprint`: a 64-bit hash of the text with case, digit runs,
  whitespace and URL paths folded, so "Code 1234" and "code 5678" are one campaign.
* `VelocityTable`: sliding-window counters in shared memory, one table for all
  the workers of a node, so a limit is exact however the SMSC spreads its
  messages over binds and workers.
* `special_kinds`: silent SMS, class-0 flash, binary, WAP push / OTA.

Rule order: the rules that need no count (lists, content, URLs, special SMS)
are walked in configuration order and the first ``block`` or ``allow`` that
fires decides; velocity rules run after them, only for a message nothing
decided, so a message that another rule blocks or allows never uses up a
sender's allowance. ``monitor`` rules record a hit and decide nothing.
"""

cimport cython
from cpython.unicode cimport Py_UNICODE_ISALNUM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t, uint32_t, uint64_t

from cpython.unicode cimport PyUnicode_READ
from smps._native.fingerprint cimport fingerprint
from smps._native.numbers cimport normalise_address
from smps._native.pdu cimport SmView
from smps._native.velocity cimport VelocityTable, mix_hash
from smps._native.text cimport UdhInfo, plain_text, udh_scan


cdef extern from "Python.h":
    int PyUnicode_KIND(object text)
    void* PyUnicode_DATA(object text)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clock_id, timespec* tp)
    enum: CLOCK_MONOTONIC

# Actions and rule kinds, as smps.proxy.screening names them: C constants inside
# (a module global would be a dict lookup on every use), the same values for Python.
cdef enum:
    _ACTION_BLOCK = 0
    _ACTION_ALLOW = 1
    _ACTION_MONITOR = 2
    _KIND_LIST = 0
    _KIND_CONTENT = 1  # keyword and regex rules: one Hyperscan database
    _KIND_URL = 2
    _KIND_SPECIAL = 3
    _KIND_VELOCITY = 4
    _KIND_FINGERPRINT = 5  # messages of listed campaigns (content fingerprints)
    # Velocity keys.
    _KEY_SOURCE = 0
    _KEY_DESTINATION = 1
    _KEY_PAIR = 2
    _KEY_FINGERPRINT = 3
    # Special SMS kinds (a bit each).
    _SPECIAL_SILENT = 1
    _SPECIAL_FLASH = 2
    _SPECIAL_BINARY = 4
    _SPECIAL_WAP_PUSH = 8

ACTION_BLOCK = _ACTION_BLOCK
ACTION_ALLOW = _ACTION_ALLOW
ACTION_MONITOR = _ACTION_MONITOR
KIND_LIST = _KIND_LIST
KIND_CONTENT = _KIND_CONTENT
KIND_URL = _KIND_URL
KIND_SPECIAL = _KIND_SPECIAL
KIND_VELOCITY = _KIND_VELOCITY
KIND_FINGERPRINT = _KIND_FINGERPRINT
KEY_SOURCE = _KEY_SOURCE
KEY_DESTINATION = _KEY_DESTINATION
KEY_PAIR = _KEY_PAIR
KEY_FINGERPRINT = _KEY_FINGERPRINT
SPECIAL_SILENT = _SPECIAL_SILENT
SPECIAL_FLASH = _SPECIAL_FLASH
SPECIAL_BINARY = _SPECIAL_BINARY
SPECIAL_WAP_PUSH = _SPECIAL_WAP_PUSH

_GSM7_UNPACKED = ("gsm7", False)

cdef enum:
    _PID_SILENT = 0x40  # "Short Message Type 0" (23.040 §9.2.3.9)
    _PID_SIM_DOWNLOAD = 0x7F
    _PORT_WAP_PUSH = 2948
    _PORT_WAP_PUSH_SECURE = 2949


# ---- addresses ------------------------------------------------------------------------


cdef class AddressSet:
    """List entries of one rule (or one rule's scope): normalised numbers, number
    prefixes and alphanumeric sender IDs (case-folded), as `smps.proxy.screening`
    parsed them. ``has`` costs one lookup per distinct prefix length."""

    cdef frozenset exact
    cdef frozenset prefixes
    cdef tuple lengths
    cdef readonly Py_ssize_t size

    def __init__(self, exact, prefixes):
        self.exact = frozenset(exact)
        self.prefixes = frozenset(prefixes)
        self.lengths = tuple(sorted({len(p) for p in self.prefixes}))
        self.size = len(self.exact) + len(self.prefixes)

    cpdef bint has(self, bytes address):
        cdef Py_ssize_t length
        cdef Py_ssize_t n = len(address)
        if address in self.exact:
            return True
        for length in self.lengths:
            if length > n:
                break
            if address[:length] in self.prefixes:
                return True
        return False


# ---- text -----------------------------------------------------------------------------


cdef inline uint64_t _fnv(uint64_t h, uint32_t c) noexcept nogil:
    return (h ^ c) * 0x100000001B3ULL


cdef uint64_t _FNV_OFFSET = 0xCBF29CE484222325ULL


cpdef uint64_t key_hash(uint64_t seed, bytes key):
    """The velocity table's key for ``key`` under one rule (``seed``); never 0."""
    cdef uint64_t h = _FNV_OFFSET ^ seed
    cdef const unsigned char* p = key
    cdef Py_ssize_t i
    for i in range(len(key)):
        h = _fnv(h, p[i])
    h = mix_hash(h)
    return h if h else 1


_OBFUSCATED_DOTS = ("[.]", "(.)", "{.}", "[dot]", "(dot)", "{dot}")


cdef inline bint _domain_char(Py_UCS4 ch) noexcept:
    return ch == 0x2D or (ch > 0x7F and Py_UNICODE_ISALNUM(ch)) or (
        (0x30 <= ch <= 0x39) or (0x61 <= ch <= 0x7A)
    )


cpdef list find_domains(str folded):
    """Domains in a case-folded text: every run of letters, digits, hyphens and
    dots with two labels or more whose last label is letters (so "1.5" is not
    one); obfuscated dots (``bad[.]example``) read as dots. The scheme does not
    matter (``http://``, ``hxxp://`` or none), nor does anything after the host.
    Only the text around each dot is looked at (str.find finds the dots)."""
    cdef list found = []
    cdef Py_ssize_t dot, start, end, last_dot, j, n
    cdef Py_UCS4 ch
    cdef bint tld_alpha
    if "[" in folded or "(" in folded or "{" in folded:
        for marker in _OBFUSCATED_DOTS:
            folded = folded.replace(marker, ".")
    dot = folded.find(".")
    if dot < 0:
        return found
    n = len(folded)
    cdef int kind = PyUnicode_KIND(folded)
    cdef void* data = PyUnicode_DATA(folded)
    while dot >= 0:
        start = dot
        while start > 0 and _domain_char(PyUnicode_READ(kind, data, start - 1)):
            start -= 1
        if start == dot:  # no label before this dot
            dot = folded.find(".", dot + 1)
            continue
        end = dot
        last_dot = -1
        while end < n:
            ch = PyUnicode_READ(kind, data, end)
            if ch == 0x2E:
                if end + 1 >= n or not _domain_char(PyUnicode_READ(kind, data, end + 1)):
                    break  # a dot that ends a sentence, or two dots
                last_dot = end
            elif not _domain_char(ch):
                break
            end += 1
        if last_dot > start and end - last_dot > 2:
            tld_alpha = True
            for j in range(last_dot + 1, end):
                ch = PyUnicode_READ(kind, data, j)
                if not (0x61 <= ch <= 0x7A or (ch > 0x7F and Py_UNICODE_ISALNUM(ch))):
                    tld_alpha = False
                    break
            if tld_alpha:
                found.append(folded[start:end])
        dot = folded.find(".", max(end, dot + 1))
    return found


cdef bint _domain_listed(frozenset listed, str domain):
    """``domain`` or one of its parent domains is in ``listed``."""
    cdef Py_ssize_t at = 0
    while True:
        if domain[at:] in listed:
            return True
        at = domain.find(".", at) + 1
        if at == 0 or domain.find(".", at) < 0:
            return False  # never a bare top-level domain


# ---- special SMS ----------------------------------------------------------------------


cpdef int special_kinds(SmView view):
    """The SPECIAL_* bits of an original (GSM 23.038 data coding, 23.040 PID)."""
    cdef int kinds = 0
    cdef int dcs = view.data_coding
    cdef UdhInfo info
    cdef bytes data
    if view.protocol_id == _PID_SILENT:
        kinds |= _SPECIAL_SILENT
    # Message class 0 (flash): general group with class bits (00x1 xx00), or group F.
    if (dcs & 0xD3) == 0x10 or (dcs & 0xF3) == 0xF0:
        kinds |= _SPECIAL_FLASH
    # 8-bit data: SMPP's 0x02 / 0x04, the general group's 8-bit alphabet, group F's.
    if dcs == 0x02 or (dcs & 0xCC) == 0x04 or (dcs & 0xF4) == 0xF4:
        kinds |= _SPECIAL_BINARY
    if view.protocol_id == _PID_SIM_DOWNLOAD:
        kinds |= _SPECIAL_WAP_PUSH
    elif view.esm_class & 0x40:
        data = view.user_data
        if udh_scan(data, len(data), &info) == 1 and info.has_ports and (
            info.port_dest == _PORT_WAP_PUSH or info.port_dest == _PORT_WAP_PUSH_SECURE
        ):
            kinds |= _SPECIAL_WAP_PUSH
    return kinds


# ---- the engine -----------------------------------------------------------------------


@cython.final
cdef class Rule:
    """One compiled rule (`smps.proxy.screening.compile_rules` makes them)."""

    cdef readonly str id
    cdef readonly int kind
    cdef readonly int action
    cdef readonly bint skip_ne
    cdef readonly bint on_destination  # list rules: the recipient, not the sender
    cdef AddressSet entries  # list rules
    cdef AddressSet scope_source  # any rule: only for these senders (None: all)
    cdef AddressSet scope_destination
    cdef frozenset domains  # URL rules
    cdef frozenset fingerprints  # fingerprint rules: the campaigns' fingerprints
    cdef int special  # SPECIAL_* bits
    cdef int key  # velocity: KEY_*
    cdef uint64_t seed  # velocity: the rule's share of the key hash
    cdef int64_t window_ms
    cdef uint32_t limit

    def __init__(self, str id, int kind, int action, *, bint skip_ne=False,
                 bint on_destination=False, AddressSet entries=None,
                 AddressSet scope_source=None, AddressSet scope_destination=None,
                 domains=(), fingerprints=(), int special=0, int key=0,
                 int64_t window_ms=0, uint32_t limit=0):
        self.id = id
        self.kind = kind
        self.action = action
        self.skip_ne = skip_ne
        self.on_destination = on_destination
        self.entries = entries
        self.scope_source = scope_source
        self.scope_destination = scope_destination
        self.domains = frozenset(domains)
        self.fingerprints = frozenset(fingerprints)
        self.special = special
        self.key = key
        self.seed = key_hash(0, id.encode("utf-8"))
        self.window_ms = window_ms
        self.limit = limit


@cython.final
cdef class Judgement:
    """What the rules made of one original: ``action`` is ACTION_BLOCK or
    ACTION_ALLOW when a rule decided (``rule`` is its id), else ACTION_MONITOR
    (only monitor rules fired; ``rule`` is the first). ``fired`` lists the ids
    of every rule that fired, in order."""

    cdef readonly int action
    cdef readonly str rule
    cdef readonly bint skip_ne
    cdef readonly list fired

    def __repr__(self):
        return f"Judgement(action={self.action}, rule={self.rule!r}, fired={self.fired!r})"


cdef class _Hits:
    # Hyperscan's match callback: the content rules that matched, by rule index.
    cdef set rules
    cdef tuple rule_of  # pattern id -> rule index

    def __call__(self, unsigned int pattern, unsigned long long start,
                 unsigned long long end, unsigned int flags, context):
        self.rules.add(self.rule_of[pattern])
        return 0


@cython.final
cdef class Engine:
    """The compiled rules of one worker. ``judge`` runs them on an original."""

    cdef readonly tuple rules
    cdef tuple stateless  # indexes of the rules walked first, in order
    cdef tuple velocity  # indexes of velocity rules, in order
    cdef readonly VelocityTable table
    cdef bytes country_code  # trace.country_code, for normalise_address
    cdef object database  # Hyperscan database of every content pattern, or None
    cdef object scratch
    cdef _Hits hits
    cdef bint needs_text, needs_source, needs_destination, needs_special
    cdef dict alphabets  # SMSC name -> (default_alphabet, gsm7_packed)
    # The counts one message took in the velocity rules so far (one per rule at most).
    cdef uint64_t* _taken_keys
    cdef int64_t* _taken_windows
    cdef readonly list counts  # hits per rule, by index
    cdef readonly uint64_t screened
    cdef readonly uint64_t nanoseconds  # spent in judge, in all

    def __init__(self, rules, VelocityTable table, bytes country_code, *, database=None,
                 pattern_rules=(), dict alphabets=None):
        cdef Rule rule
        self.rules = tuple(rules)
        self.table = table
        self.country_code = country_code
        self.database = database
        self.scratch = None
        self.hits = _Hits()
        self.hits.rules = set()
        self.hits.rule_of = tuple(pattern_rules)
        if database is not None:
            import hyperscan

            self.scratch = hyperscan.Scratch(database)
        self.alphabets = alphabets or {}
        self.counts = [0] * len(self.rules)
        stateless, velocity = [], []
        self.needs_text = self.needs_source = self.needs_destination = False
        self.needs_special = False
        for i, rule in enumerate(self.rules):
            (velocity if rule.kind == _KIND_VELOCITY else stateless).append(i)
            if rule.kind in (_KIND_CONTENT, _KIND_URL, _KIND_FINGERPRINT) or (
                rule.kind == _KIND_VELOCITY and rule.key == _KEY_FINGERPRINT
            ):
                self.needs_text = True
            if rule.kind == _KIND_SPECIAL:
                self.needs_special = True
            if rule.scope_source is not None or (
                rule.kind == _KIND_LIST and not rule.on_destination
            ) or (rule.kind == _KIND_VELOCITY and rule.key in (_KEY_SOURCE, _KEY_PAIR)):
                self.needs_source = True
            if rule.scope_destination is not None or (
                rule.kind == _KIND_LIST and rule.on_destination
            ) or (rule.kind == _KIND_VELOCITY and rule.key in (_KEY_DESTINATION, _KEY_PAIR)):
                self.needs_destination = True
        self.stateless = tuple(stateless)
        self.velocity = tuple(velocity)
        self._taken_keys = <uint64_t*>PyMem_Malloc(max(1, len(velocity)) * sizeof(uint64_t))
        self._taken_windows = <int64_t*>PyMem_Malloc(max(1, len(velocity)) * sizeof(int64_t))
        if self._taken_keys == NULL or self._taken_windows == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self._taken_keys)
        PyMem_Free(self._taken_windows)

    def __len__(self):
        return len(self.rules)

    cpdef Judgement judge(self, SmView view, str smsc, int64_t now_ms, bint count=True,
                          str text=None, uint64_t text_fingerprint=0):
        """Run the rules on one original; None when none fired. ``count=False``
        (trying a message) leaves every velocity count as it was. ``text`` and
        ``text_fingerprint``: its text and that text's fingerprint
        (`smps._native.fingerprint`), when the caller has them already (else made
        here when a rule needs them)."""
        cdef timespec t0, t1
        clock_gettime(CLOCK_MONOTONIC, &t0)
        result = self._judge(view, smsc, now_ms, count, text, text_fingerprint)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        self.screened += 1
        self.nanoseconds += (t1.tv_sec - t0.tv_sec) * 1000000000 + (t1.tv_nsec - t0.tv_nsec)
        return result

    cdef Judgement _judge(self, SmView view, str smsc, int64_t now_ms, bint count, str text,
                          uint64_t text_fingerprint):
        cdef str folded = None
        cdef bytes source = None, destination = None
        cdef list domains = None
        cdef set content = None
        cdef int special = 0
        cdef Rule rule
        cdef Py_ssize_t i, j
        cdef list fired = None
        cdef Py_ssize_t taken
        cdef Judgement verdict
        cdef uint64_t key
        cdef bint hit
        if self.needs_source:
            source = self._address(view.source_addr, view.source_addr_ton, view.source_addr_npi)
        if self.needs_destination:
            destination = self._address(view.destination_addr, view.dest_addr_ton,
                                        view.dest_addr_npi)
        if self.needs_special:
            special = special_kinds(view)
        for i in self.stateless:
            rule = <Rule>self.rules[i]
            if not self._in_scope(rule, source, destination):
                continue
            if rule.kind == _KIND_LIST:
                hit = rule.entries.has(destination if rule.on_destination else source)
            elif rule.kind == _KIND_SPECIAL:
                hit = (special & rule.special) != 0
            elif rule.kind == _KIND_FINGERPRINT:
                if text_fingerprint == 0:
                    if text is None:
                        text = self._text(view, smsc)
                    text_fingerprint = fingerprint(text) or 1
                hit = text_fingerprint in rule.fingerprints
            else:
                if folded is None:
                    if text is None:
                        text = self._text(view, smsc)
                    folded = text.casefold()
                if rule.kind == _KIND_CONTENT:
                    if content is None:
                        content = self._content(folded)
                    hit = i in content
                else:
                    if domains is None:
                        domains = find_domains(folded)
                    hit = False
                    for domain in domains:
                        if _domain_listed(rule.domains, domain):
                            hit = True
                            break
            if not hit:
                continue
            fired = self._fired(fired, i)
            if rule.action != _ACTION_MONITOR:
                return self._decided(rule, fired)
        if self.velocity:
            taken = 0  # counts this message took (_taken_keys/_taken_windows), to give back
            for i in self.velocity:
                rule = <Rule>self.rules[i]
                if not self._in_scope(rule, source, destination):
                    continue
                if rule.key == _KEY_FINGERPRINT:
                    if text_fingerprint == 0:
                        if text is None:
                            text = self._text(view, smsc)
                        text_fingerprint = fingerprint(text) or 1
                    key = mix_hash(rule.seed ^ text_fingerprint) or 1
                elif rule.key == _KEY_SOURCE:
                    key = key_hash(rule.seed, source)
                elif rule.key == _KEY_DESTINATION:
                    key = key_hash(rule.seed, destination)
                else:  # the pair: the destination hashed on from the source
                    key = key_hash(key_hash(rule.seed, source), destination)
                if count:
                    if self.table.take(key, now_ms, rule.window_ms, rule.limit):
                        self._taken_keys[taken] = key
                        self._taken_windows[taken] = rule.window_ms
                        taken += 1
                        continue
                elif self.table.count(key, now_ms, rule.window_ms) < rule.limit:
                    continue
                fired = self._fired(fired, i)
                if rule.action != _ACTION_MONITOR:
                    for j in range(taken):  # this message does not pass: not counted
                        self.table.give_back(self._taken_keys[j], now_ms, self._taken_windows[j])
                    return self._decided(rule, fired)
        if fired is None:
            return None
        verdict = Judgement.__new__(Judgement)
        verdict.action = _ACTION_MONITOR
        verdict.rule = (<Rule>self.rules[fired[0]]).id
        verdict.skip_ne = False
        verdict.fired = [(<Rule>self.rules[i]).id for i in fired]
        return verdict

    cdef list _fired(self, list fired, Py_ssize_t index):
        self.counts[index] += 1
        if fired is None:
            fired = []
        fired.append(index)
        return fired

    cdef Judgement _decided(self, Rule rule, list fired):
        cdef Judgement verdict = Judgement.__new__(Judgement)
        verdict.action = rule.action
        verdict.rule = rule.id
        verdict.skip_ne = rule.skip_ne
        verdict.fired = [(<Rule>self.rules[i]).id for i in fired]
        return verdict

    cdef bint _in_scope(self, Rule rule, bytes source, bytes destination):
        if rule.scope_source is not None and not rule.scope_source.has(source):
            return False
        if rule.scope_destination is not None and not rule.scope_destination.has(destination):
            return False
        return True

    cdef bytes _address(self, bytes address, int ton, int npi):
        normalised = normalise_address(address, ton, npi, self.country_code)
        if normalised.isdigit():
            return normalised
        return normalised.lower()  # sender IDs match whatever their case

    cdef str _text(self, SmView view, str smsc):
        """The original's text; "" for binary data, which has none."""
        alphabet, packed = self.alphabets.get(smsc, _GSM7_UNPACKED)
        text = plain_text(view.user_data, view.data_coding, view.esm_class, alphabet, packed)
        return "" if text is None else text

    cdef set _content(self, str folded):
        """Indexes of the content rules whose keywords or expressions occur."""
        cdef set matched = set()
        if self.database is None or not folded:
            return matched
        self.hits.rules = matched
        # Positional (data, handler, flags, context, scratch): no keyword parsing.
        self.database.scan(folded.encode("utf-8", "surrogatepass"), self.hits, 0, None,
                           self.scratch)
        return matched
