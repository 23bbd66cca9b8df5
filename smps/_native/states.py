"""SMPP session states and which requests a peer may send in each (SMPP 3.4 §2.3,
v5.0 §2.4; reference sheet §4.1-4.2). One table, read by the session, the tests
and the docs.

SMPS plays two roles: toward an SMSC it is the ESME (client); toward the NEs
it is the SMSC (server). The table says, for our role and the current state,
which *request* command ids the peer may send us. Responses are never judged
by state: they are matched to our outstanding requests by sequence number.
"""

import enum

from smps._native.pdu import CommandId as C


class State(enum.Enum):
    OPEN = "open"  # TCP up, not bound yet
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"  # unbind sent or received; closing
    CLOSED = "closed"


class Role(enum.Enum):
    ESME = "esme"  # SMPS toward an SMSC
    SMSC = "smsc"  # SMPS toward the NEs


BIND_STATE = {
    C.BIND_TRANSMITTER: State.BOUND_TX,
    C.BIND_RECEIVER: State.BOUND_RX,
    C.BIND_TRANSCEIVER: State.BOUND_TRX,
}

_ANY_STATE = frozenset({C.ENQUIRE_LINK})
_BOUND = frozenset({C.UNBIND, C.ENQUIRE_LINK})

# Requests the peer may send us, by our role and our state.
ALLOWED_REQUESTS: dict[Role, dict[State, frozenset[int]]] = {
    # The peer is an SMSC: it delivers to us once we are bound as RX or TRX.
    Role.ESME: {
        State.OPEN: _ANY_STATE | {C.OUTBIND},
        State.BOUND_TX: _BOUND,
        State.BOUND_RX: _BOUND | {C.DELIVER_SM, C.DATA_SM, C.ALERT_NOTIFICATION},
        State.BOUND_TRX: _BOUND | {C.DELIVER_SM, C.DATA_SM, C.ALERT_NOTIFICATION},
        State.UNBOUND: _ANY_STATE,
        State.CLOSED: frozenset(),
    },
    # The peer is an NE: it binds, then only answers our copies. Submissions are
    # allowed by SMPP on TX/TRX binds, so they reach the server, which refuses them.
    Role.SMSC: {
        State.OPEN: _ANY_STATE | set(BIND_STATE),
        State.BOUND_TX: _BOUND
        | {C.SUBMIT_SM, C.DATA_SM, C.SUBMIT_MULTI, C.QUERY_SM, C.CANCEL_SM, C.REPLACE_SM},
        State.BOUND_RX: _BOUND,
        State.BOUND_TRX: _BOUND
        | {C.SUBMIT_SM, C.DATA_SM, C.SUBMIT_MULTI, C.QUERY_SM, C.CANCEL_SM, C.REPLACE_SM},
        State.UNBOUND: _ANY_STATE,
        State.CLOSED: frozenset(),
    },
}

# Requests we may send, by state (a programming error to break).
MAY_SEND_COPIES = frozenset({State.BOUND_RX, State.BOUND_TRX})
