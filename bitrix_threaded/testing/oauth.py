"""OAuth 2.0 for the fake portal: refresh-token rotation, access-token expiry.

Follows the Bitrix24 OAuth server: ``/oauth/token/?grant_type=refresh_token
&client_id=..&client_secret=..&refresh_token=..`` returns a new access token
*and* a new refresh token; the used refresh token stops working.
"""
from __future__ import annotations

import dataclasses
import random
import string
import threading
from typing import Any, Dict, Mapping, Optional, Tuple

from .limits import as_clock

__all__ = ["OAuthCredentials", "TokenRegistry"]

_ALPHABET = string.ascii_lowercase + string.digits


def _mask(secret: str) -> str:
    return secret[:4] + "***" if len(secret) > 8 else "***"


@dataclasses.dataclass(frozen=True, repr=False)
class OAuthCredentials:
    """What an OAuth application needs to talk to the portal. Secrets are masked in repr."""

    client_id: str
    client_secret: str
    refresh_token: str
    access_token: str
    endpoint: str
    token_url: str

    def __repr__(self) -> str:
        return (
            f"OAuthCredentials(client_id={self.client_id!r}, "
            f"client_secret={_mask(self.client_secret)!r}, "
            f"refresh_token={_mask(self.refresh_token)!r}, "
            f"access_token={_mask(self.access_token)!r}, "
            f"endpoint={self.endpoint!r}, token_url={self.token_url!r})"
        )


@dataclasses.dataclass(frozen=True)
class OAuthReply:
    """An HTTP status and JSON body for the token endpoint."""

    status: int
    body: Dict[str, Any]


class TokenRegistry:
    """Issues, rotates, checks and expires tokens for one application. Thread-safe.

    Token strings are drawn from a seeded generator, so a portal built with
    the same seed hands out the same tokens.
    """

    def __init__(self, *, seed: int = 1, token_ttl: float = 3600.0, clock: Any = None,
                 user_id: int = 1, scope: str = "crm,task,user,lists,entity") -> None:
        if token_ttl <= 0:
            raise ValueError("token_ttl must be positive")
        self._rng = random.Random(f"oauth-{seed}")
        self._clock = as_clock(clock)
        self.token_ttl = float(token_ttl)
        self.user_id = user_id
        self.scope = scope
        self.client_id = f"local.{self._token(13)}.{self._rng.randrange(10**7, 10**8)}"
        self.client_secret = self._token(50)
        self.member_id = self._token(32)
        self._access: Dict[str, float] = {}
        self._refresh: Dict[str, bool] = {}
        self._refreshes = 0
        self._lock = threading.Lock()

    def _token(self, length: int) -> str:
        return "".join(self._rng.choice(_ALPHABET) for _ in range(length))

    def issue(self) -> Tuple[str, str, int]:
        """Create a fresh (access token, refresh token, expires-at) triple."""
        with self._lock:
            return self._issue_locked()

    def _issue_locked(self) -> Tuple[str, str, int]:
        access = self._token(40)
        refresh = self._token(40)
        expires = self._clock.time() + self.token_ttl
        self._access[access] = expires
        self._refresh[refresh] = True
        return access, refresh, int(expires)

    def refresh(self, params: Mapping[str, Any], endpoint: str, domain: str) -> OAuthReply:
        """Handle one token-endpoint request (``params`` = query and form values)."""
        grant = params.get("grant_type")
        if grant != "refresh_token":
            return OAuthReply(400, {"error": "invalid_request",
                                    "error_description": "Unsupported or missing grant_type"})
        if (params.get("client_id") != self.client_id
                or params.get("client_secret") != self.client_secret):
            return OAuthReply(401, {"error": "invalid_client",
                                    "error_description": "Invalid client credentials"})
        token = params.get("refresh_token")
        with self._lock:
            if not isinstance(token, str) or not self._refresh.pop(token, False):
                return OAuthReply(400, {"error": "invalid_grant",
                                        "error_description": "Invalid refresh token"})
            access, refresh, expires = self._issue_locked()
            self._refreshes += 1
        return OAuthReply(200, {
            "access_token": access,
            "client_endpoint": endpoint,
            "domain": domain,
            "expires": expires,
            "expires_in": int(self.token_ttl),
            "member_id": self.member_id,
            "refresh_token": refresh,
            "scope": self.scope,
            "server_endpoint": endpoint,
            "status": "L",
            "user_id": self.user_id,
        })

    def check(self, token: str) -> Optional[Tuple[str, str]]:
        """Return None if ``token`` is a live access token, else ``(error, description)``."""
        with self._lock:
            expires = self._access.get(token)
            now = self._clock.time()
        if expires is None:
            return "invalid_token", "The access token provided is invalid"
        if expires <= now:
            return "expired_token", "The access token provided has expired"
        return None

    def expire_all(self) -> int:
        """Make every access token expired now; return how many were live."""
        with self._lock:
            now = self._clock.time()
            live = [token for token, expires in self._access.items() if expires > now]
            for token in live:
                self._access[token] = now
            return len(live)

    @property
    def refreshes(self) -> int:
        """Successful refreshes so far."""
        with self._lock:
            return self._refreshes
