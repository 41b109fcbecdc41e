"""API keys: generated here, shown once, stored only as SHA-256 hashes.

Keys are 32 random bytes, so a plain SHA-256 is enough (no password stretching is
needed for high-entropy secrets); comparison is constant-time and always walks
every configured key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

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


def deployment_secrets(root: Path, *, create: bool, missing: str) -> dict[str, str]:
    """A deployment's {"api_key", "admin_key"} in ``root/secrets.json`` (mode 600).

    Generated on first use when ``create``; otherwise a missing file raises TargetError
    with ``missing`` (what to run first). The keys are never printed or logged.
    """
    from triptyque.errors import TargetError

    path = root / "secrets.json"
    if path.exists():
        loaded: dict[str, str] = json.loads(path.read_text())
        return loaded
    if not create:
        raise TargetError(missing)
    root.mkdir(parents=True, exist_ok=True)
    values = {"api_key": generate_key(), "admin_key": generate_key()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    return values


AUDIT_KEY_BYTES = 32


def audit_key(path: Path, *, create: bool = False) -> bytes:
    """The audit chain's HMAC key in ``path`` (hex, mode 600), kept outside the state folder.

    Whoever can write the state folder but not read this file cannot forge an audit entry
    or a kill-switch state. Generated when ``create`` and missing; StateError otherwise.
    The key is never printed or logged.
    """
    from triptyque.errors import StateError

    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if not create:
            raise StateError(f"audit key file {path.name} is missing; the gateway creates it on its "
                             "first start (give the same file to `triptyque audit verify --key`)") from None
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(AUDIT_KEY_BYTES) + "\n")
        return audit_key(path)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise StateError(f"cannot read the audit key file {path.name}: {reason}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise StateError(f"audit key file {path.name} does not hold a hex key of at least 16 bytes")
    return key
