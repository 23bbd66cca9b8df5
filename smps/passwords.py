"""Password and API-token hashing.

Passwords (NE accounts and admin users alike) are hashed with Argon2id in the
standard PHC string format (``$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>``),
which carries its own parameters, so they can be raised later without
invalidating stored hashes. The parameters are OWASP's baseline (19 MiB, two
passes, one lane: about 30 ms per hash here), modest on purpose: the NE bind
path verifies a password on every bind, and binds come in bursts when a link
flaps. Hashing and verifying are CPU-bound: call them through
``loop.run_in_executor``, never on the event loop. SMPP passwords are at most
8 characters, so the hash is what stands between a stolen database and the
passwords; Argon2's memory cost is the point.

API tokens are 256 random bits; they are stored as SHA-256 digests, which is
enough for a secret that cannot be guessed and cheap enough to check per request.
"""

from __future__ import annotations

import functools
import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

TOKEN_PREFIX = "smps_"


def hash_password(password: str) -> str:
    """A salted Argon2id hash of ``password`` in the PHC format above."""
    return _HASHER.hash(password)


def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored`` (a :func:`hash_password` result).

    A malformed ``stored`` value verifies nothing.
    """
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def unknown_password_hash() -> str:
    """The hash of a password nobody knows (made once per process): checking a
    guess against it costs what checking a real account's password does."""
    return hash_password(secrets.token_urlsafe(16))


def new_token() -> str:
    """A fresh API token as shown to the operator once: ``smps_`` + 43 URL-safe characters."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).digest()
