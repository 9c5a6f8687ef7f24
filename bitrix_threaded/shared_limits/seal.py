"""Sealing the shared OAuth token set, so Redis never holds a usable token in clear.

Processes that share a refresh token must share the token set itself (the refresh
token is single-use: whoever rotates it must hand the new one to the others). Every
process of an application knows its ``client_secret``; Redis does not. So the token
set is stored encrypted and authenticated under keys derived from the client secret
(stdlib only): HMAC-SHA256 as a PRF gives a keystream in counter mode over a random
nonce, and an HMAC-SHA256 tag over nonce and ciphertext detects tampering or a set
sealed under another secret. A dump of Redis then shows neither token.

Pure functions; thread-safe.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any, Dict, Optional

__all__ = ["seal", "unseal"]

_VERSION = "s1."
_NONCE = 16
_TAG = 16


def _keys(secret: str, context: str) -> tuple[bytes, bytes]:
    root = hmac.new(secret.encode("utf-8"), b"bitrix_threaded token seal\x1f" +
                    context.encode("utf-8"), hashlib.sha256).digest()
    return (hmac.new(root, b"encrypt", hashlib.sha256).digest(),
            hmac.new(root, b"authenticate", hashlib.sha256).digest())


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hmac.new(key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def seal(secret: str, context: str, payload: Dict[str, Any]) -> str:
    """``payload`` (JSON-able) encrypted and tagged under ``secret`` for ``context``."""
    enc_key, mac_key = _keys(secret, context)
    plain = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    nonce = os.urandom(_NONCE)
    cipher = bytes(a ^ b for a, b in zip(plain, _keystream(enc_key, nonce, len(plain))))
    tag = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()[:_TAG]
    return _VERSION + base64.urlsafe_b64encode(nonce + cipher + tag).decode("ascii")


def unseal(secret: str, context: str, sealed: Any) -> Optional[Dict[str, Any]]:
    """The payload, or None when ``sealed`` is not a set sealed under ``secret``."""
    if isinstance(sealed, bytes):
        sealed = sealed.decode("ascii", "replace")
    if not isinstance(sealed, str) or not sealed.startswith(_VERSION):
        return None
    try:
        raw = base64.urlsafe_b64decode(sealed[len(_VERSION):].encode("ascii"))
    except (ValueError, TypeError):
        return None
    if len(raw) < _NONCE + _TAG:
        return None
    nonce, cipher, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
    enc_key, mac_key = _keys(secret, context)
    expected = hmac.new(mac_key, nonce + cipher, hashlib.sha256).digest()[:_TAG]
    if not hmac.compare_digest(tag, expected):
        return None
    plain = bytes(a ^ b for a, b in zip(cipher, _keystream(enc_key, nonce, len(cipher))))
    try:
        payload = json.loads(plain.decode("utf-8"))
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
