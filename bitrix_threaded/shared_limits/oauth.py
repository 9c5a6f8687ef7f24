"""OAuth refresh coordinated across processes: each rotation happens once, everywhere.

Bitrix24 refresh tokens are single-use (REST docs, ``settings/oauth/auto-renewal.md``
of bitrix-tools/b24-rest-docs): two processes refreshing at once leave one of them
with a dead token. With shared limits, a refresh runs under a Redis lock, and the
new token set is published in Redis, sealed with the client secret (see
:mod:`.seal`); every other process adopts it instead of refreshing again.
``on_token_refresh`` fires once, in the process that refreshed.

The shared set outlives a restart of every process: a process starting later adopts
it (it is newer than the refresh token in its configuration, which was spent). The
key expires ``TOKEN_TTL`` after the last rotation.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Optional

from ..auth import OAuthRefresher, TokenSet
from ..clock import Clock
from .keys import KeySpace
from .link import DOWN, RedisLink
from .scripts import Scripts
from .seal import seal, unseal

__all__ = ["SharedOAuthRefresher"]

TOKEN_TTL_MS = 14 * 86_400_000  # two weeks after the last rotation
LOCK_MS = 60_000  # longer than one token exchange may take
LOCK_POLL = 0.05


class SharedOAuthRefresher(OAuthRefresher):
    """:class:`~bitrix_threaded.auth.OAuthRefresher` whose rotations are shared via Redis.

    Within a process, renewal stays coalesced by the parent's lock; across processes,
    by a Redis lock and a shared generation counter. While Redis is unavailable a
    process refreshes on its own (or raises, with ``fallback="raise"``). Thread-safe.
    """

    def __init__(self, endpoint: str, *, scripts: Scripts, link: RedisLink, keys: KeySpace,
                 clock: Clock, **kwargs: Any) -> None:
        super().__init__(endpoint, **kwargs)
        self._scripts = scripts
        self._link = link
        self._keys = keys
        self._clock = clock
        self._context = f"{keys.oauth}|{self.client_id}"
        self._shared_generation = 0  # the Redis generation of the tokens held here
        self._synced = False

    # -- the parent's two entry points ----------------------------------------------------
    def _current(self) -> tuple[str, int]:
        token_set = None
        with self._lock:
            if not self._synced:
                self._synced = True
                self._adopt()
            if self._access_token is None:
                token_set = self._shared_refresh()
            token, generation = self._access_token, self._generation
        self._announce(token_set)
        assert token is not None
        return token, generation

    def renew(self, seen_generation: int) -> None:
        token_set = None
        with self._lock:
            if self._generation == seen_generation:
                token_set = self._shared_refresh()
        self._announce(token_set)

    def _announce(self, token_set: Optional[TokenSet]) -> None:
        if token_set is not None and self._on_refresh is not None:
            self._on_refresh(token_set)

    # -- shared state ---------------------------------------------------------------------
    def _shared_refresh(self) -> Optional[TokenSet]:
        """Under the local lock: adopt a newer shared set, or refresh under the Redis lock."""
        if self._adopt():
            return None
        owner = os.urandom(12).hex()
        with self._redis_lock(owner) as held:
            if held and self._adopt():
                return None
            token_set = self._refresh_locked()
            if held:
                self._publish(token_set)
            return token_set

    def _read(self) -> Any:
        def read() -> Any:
            self._scripts.count()
            return self._scripts.client.hmget(self._keys.oauth, "gen", "set")
        return self._link.call(read)

    def _adopt(self) -> bool:
        """Take the shared token set when it is newer than ours; True when taken."""
        reply = self._read()
        if reply is DOWN or not reply or reply[0] is None:
            return False
        generation = int(reply[0])
        if generation <= self._shared_generation:
            return False
        payload = unseal(self._client_secret, self._context, reply[1])
        if payload is None or not isinstance(payload.get("a"), str) \
                or not isinstance(payload.get("r"), str):
            return False  # sealed under another secret, or damaged: ignore it
        if payload["a"] != self._access_token:
            self._retired.extend(t for t in (self._access_token, self._refresh_token) if t)
            del self._retired[:-16]
            self._access_token = payload["a"]
            self._refresh_token = payload["r"]
            self._generation += 1
        self._shared_generation = generation
        return True

    def _publish(self, token_set: TokenSet) -> None:
        payload = {"a": token_set.access_token, "r": token_set.refresh_token,
                   "e": token_set.expires}
        sealed = seal(self._client_secret, self._context, payload)
        generation = self._shared_generation + 1

        def write() -> Any:
            self._scripts.count()
            pipe = self._scripts.client.pipeline(transaction=True)
            pipe.hset(self._keys.oauth, mapping={"gen": generation, "set": sealed})
            pipe.pexpire(self._keys.oauth, TOKEN_TTL_MS)
            return pipe.execute()

        if self._link.call(write) is not DOWN:
            self._shared_generation = generation

    @contextlib.contextmanager
    def _redis_lock(self, owner: str) -> Iterator[bool]:
        """Hold the Redis refresh lock (yields True), or yield False when Redis is down.

        While waiting, a set published by the holder is adopted and ends the wait
        (yields True with the lock not taken: the caller then finds the set adopted).
        """
        waited = 0.0
        held = False
        while True:
            def take() -> Any:
                self._scripts.count()
                return self._scripts.client.set(self._keys.oauth_lock, owner, nx=True,
                                                px=LOCK_MS)
            reply = self._link.call(take)
            if reply is DOWN:
                yield False
                return
            if reply:
                held = True
                break
            if waited > LOCK_MS / 1000 + 1.0:
                break  # a holder that vanished: its lock has expired by now anyway
            self._clock.sleep(LOCK_POLL)
            waited += LOCK_POLL
            if self._newer_published():
                break
        try:
            yield True
        finally:
            if held:
                self._link.call(lambda: self._scripts.run(
                    "unlock", [self._keys.oauth_lock], [owner]))

    def _newer_published(self) -> bool:
        def generation() -> Any:
            self._scripts.count()
            return self._scripts.client.hget(self._keys.oauth, "gen")
        reply = self._link.call(generation)
        return reply is not DOWN and reply is not None and int(reply) > self._shared_generation

    def __repr__(self) -> str:
        return f"SharedOAuthRefresher('{self.base_url}', client_id={self.client_id!r})"
