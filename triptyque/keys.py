"""API keys: generated here, shown once, stored only as SHA-256 hashes.

Keys are 32 random bytes, so a plain SHA-256 is enough (no password stretching is
needed for high-entropy secrets); comparison is constant-time and always walks
every configured key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "tq-"


def generate_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def match_key(presented: str, hashes: dict[str, str]) -> str | None:
    """The name of the key whose hash matches, or None; timing does not depend on which."""
    digest = hash_key(presented)
    found: str | None = None
    for name, expected in hashes.items():
        if hmac.compare_digest(digest, expected):
            found = name
    return found
