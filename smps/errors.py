"""The one exception hierarchy of SMPS.

Protocol errors carry the SMPP command_status to answer with, so the session
layer never classifies an error by its message text. Socket errors stay OSError.
"""


class SmpsError(Exception):
    """Base of every error SMPS raises on purpose."""


class ConfigError(SmpsError):
    """A configuration file or value was refused.

    str() is one line naming the file, the key path and the reason, e.g.
    ``config/smps.yaml: smsc[0].port: expected an integer from 1 to 65535, got 'abc'``.
    """

    def __init__(self, reason: str, *, file: str | None = None, path: str | None = None):
        self.reason = reason
        self.file = file
        self.path = path
        super().__init__(self.__str__())

    def __str__(self) -> str:
        parts = [p for p in (self.file, self.path) if p]
        return ": ".join([*parts, self.reason])


class ProtocolError(SmpsError):
    """Bytes from the network broke the SMPP rules.

    ``status`` is the command_status to answer with; ``sequence`` and
    ``command_id`` are those of the offending PDU when they could be read (else 0).
    """

    def __init__(self, message: str, status: int, sequence: int = 0, command_id: int = 0):
        super().__init__(message)
        self.status = status
        self.sequence = sequence
        self.command_id = command_id


class FramingError(ProtocolError):
    """The byte stream cannot be trusted any more (bad command_length).

    The session answers generic_nack with ``status`` and closes the connection.
    """


class PduError(ProtocolError):
    """A PDU was framed correctly but its body is malformed.

    The session answers the request's own *_resp with ``status`` (or
    generic_nack when the command has no response) and keeps the session.
    """


class StateDirBusy(SmpsError):
    """Another running SMPS holds the lock on this ``node.state_dir``: a second node on
    it would share its database, spool and control socket."""
