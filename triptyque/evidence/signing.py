"""Ed25519 keys for evidence bundles (the ``cryptography`` package): create, load, sign, check.

The private key is a PKCS#8 PEM file created with mode 600 and never printed; the public
key is written beside it (``<key>.pub``, SubjectPublicKeyInfo PEM). A key is named by its
fingerprint: the SHA-256 of the raw 32-byte public key, in hex.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from triptyque.evidence.errors import EvidenceError

ALGORITHM = "Ed25519"
KEY_MODE = 0o600


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    fingerprint: str


def public_path(private: Path) -> Path:
    return private.with_name(private.name + ".pub")


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()


def generate(private: Path) -> KeyPair:
    """A new key pair; refuses to replace a key that exists (a lost key cannot be recovered)."""
    public = public_path(private)
    for path in (private, public):
        if path.exists():
            raise EvidenceError(f"{path} exists already; move it away first (keys are never overwritten)")
    private.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Created with mode 600 from the first byte (O_EXCL: never through a file someone prepared).
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_MODE)
    try:
        os.fchmod(fd, KEY_MODE)  # whatever the umask
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private, public, fingerprint(key.public_key()))


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except FileNotFoundError:
        raise EvidenceError(f"no signing key at {path}: create one with `triptyque evidence keygen`") from None
    except OSError as exc:
        raise EvidenceError(f"cannot read the signing key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise EvidenceError(f"{path} is readable by others (mode {mode:o}); `chmod 600` it, then rotate it "
                            "if others may have read it")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise EvidenceError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceError(f"{path} is not an Ed25519 key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise EvidenceError(f"no public key at {path}") from None
    except ValueError:
        raise EvidenceError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EvidenceError(f"{path} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, data: bytes) -> dict[str, str]:
    """The signature document kept beside the manifest (public key included, to name the signer)."""
    public = key.public_key()
    return {"algorithm": ALGORITHM, "key_fingerprint": fingerprint(public),
            "public_key": base64.b64encode(_raw(public)).decode(),
            "signature": base64.b64encode(key.sign(data)).decode()}


def check(document: object, data: bytes, trusted: Ed25519PublicKey | None = None) -> str:
    """The signer's fingerprint when ``document`` signs ``data``; EvidenceError saying why not."""
    if not isinstance(document, dict) or document.get("algorithm") != ALGORITHM:
        raise EvidenceError(f"bad signature: not an {ALGORITHM} signature document")
    try:
        raw = base64.b64decode(str(document.get("public_key", "")), validate=True)
        signature = base64.b64decode(str(document.get("signature", "")), validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise EvidenceError("bad signature: the public key or signature is not valid base64 Ed25519") from None
    if trusted is not None and _raw(trusted) != raw:
        raise EvidenceError(f"bad signature: signed by key {fingerprint(public)[:16]}, not by the trusted key "
                            f"{fingerprint(trusted)[:16]}")
    try:
        public.verify(signature, data)
    except InvalidSignature:
        raise EvidenceError("bad signature: MANIFEST.json does not match its signature") from None
    if document.get("key_fingerprint") != fingerprint(public):
        raise EvidenceError("bad signature: key_fingerprint does not name the public key given")
    return fingerprint(public)
