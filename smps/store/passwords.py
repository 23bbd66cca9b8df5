"""Password and API-token hashing.

Passwords (NE accounts, admin users) are hashed with scrypt from the standard
library: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``. The parameters (n=2**14,
r=8, p=1: 16 MiB and about 50 ms per hash here) are modest on purpose: the NE
bind path verifies a password on every bind, and binds come in bursts when a
link flaps. Both hashing and verifying are CPU-bound: call them through
``loop.run_in_executor``, never on the event loop. SMPP passwords are at most
8 characters, so the hash is what stands between a stolen database and the
passwords; scrypt's memory cost is the point.

API tokens are 256 random bits; they are stored as SHA-256 digests, which is
enough for a secret that cannot be guessed and cheap enough to check per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_MAXMEM = 64 * 1024 * 1024

TOKEN_PREFIX = "smps_"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash of ``password`` in the self-describing format above."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(stored: str, password: str) -> bool:
    """True when ``password`` matches ``stored`` (a :func:`hash_password` result).

    A malformed ``stored`` value verifies nothing. Constant-time compare.
    """
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def new_token() -> str:
    """A fresh API token as shown to the operator once: ``smps_`` + 43 URL-safe characters."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).digest()
