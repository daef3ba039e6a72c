"""Secrets stored in the database (data-connection and tracker credentials), encrypted with Fernet."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def fernet() -> Fernet:
    key = settings.TINYFORGE_ENCRYPTION_KEY
    if not key:
        # Derived, so the demo needs no extra secret; production may set its own key.
        key = base64.urlsafe_b64encode(hashlib.sha256(f"tinyforge-credentials:{settings.SECRET_KEY}".encode()).digest())
    return Fernet(key)


def encrypt_json(value) -> bytes:
    return fernet().encrypt(json.dumps(value).encode("utf-8"))


def decrypt_json(token: bytes, what: str):
    """The stored value; ValueError naming `what` when the key changed since it was saved."""
    try:
        return json.loads(fernet().decrypt(bytes(token)))
    except InvalidToken:
        raise ValueError(
            f"{what}: stored credentials cannot be decrypted "
            "(SECRET_KEY or TINYFORGE_ENCRYPTION_KEY changed since they were saved); enter them again"
        ) from None
