"""Worker sessions: one ``requests.Session`` per worker thread, built from a template.

A caller may pass ``Bitrix(..., client=session)`` (fast_bitrix24's ``client=``) with
the headers, proxies, certificates, cookies or mounted adapters their network needs.
A ``requests.Session`` is not safe to share between threads, so the template itself
is never used for requests: each worker gets its own session carrying copies of the
template's settings. Mounted adapters are shared, not copied: an adapter's urllib3
pool manager is thread-safe, and a custom adapter (an SSL context, a unix socket)
may hold state that copying would lose. The template and its adapters stay the
caller's: closing the client closes only what it created.

Adapters equal to the ones ``requests`` mounts by default are replaced by the
client's own, which never retry (the client's retry policy decides that) and keep a
small connection pool per worker. Likewise, the template's headers override the
client's own (``User-Agent``...) only where they differ from what ``requests`` sets
by default.
"""

from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Tuple, Union

import requests
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from requests.utils import default_headers

__all__ = ["worker_session"]


def _is_default_adapter(adapter: Any) -> bool:
    """True for an adapter indistinguishable from the one ``requests.Session()`` mounts."""
    if type(adapter) is not HTTPAdapter:
        return False
    retries = adapter.max_retries
    return (
        getattr(retries, "total", None) == 0
        and adapter._pool_connections == DEFAULT_POOLSIZE
        and adapter._pool_maxsize == DEFAULT_POOLSIZE
        and not adapter._pool_block
        and not adapter.config
    )


def worker_session(
    template: Optional[Any],
    *,
    verify: Union[bool, str],
    new_adapter: Callable[[], Any],
    headers: Mapping[str, str],
) -> Tuple[Any, List[Any]]:
    """A new session for one worker thread, and the adapters it owns (to close later).

    ``template`` is the caller's ``requests.Session`` or None. ``verify`` is the
    client's ``ssl`` argument; it wins over the template's ``verify`` unless it is the
    default (True). ``new_adapter()`` makes the client's own adapter; ``headers`` are
    the client's own headers (``User-Agent``...).
    """
    session = requests.Session()
    session.verify = verify
    session.headers.update(headers)
    if template is None:
        adapter = new_adapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session, [adapter]
    if not isinstance(template, requests.Session):
        raise TypeError(f"client must be a requests.Session, got {type(template).__name__}")
    stock = default_headers()
    for name, value in template.headers.items():
        if stock.get(name) != value:
            session.headers[name] = value
    session.proxies.update(template.proxies)
    session.params = dict(template.params) if isinstance(template.params, dict) \
        else template.params
    session.cookies.update(template.cookies)
    session.auth = template.auth
    session.cert = template.cert
    session.trust_env = template.trust_env
    session.max_redirects = template.max_redirects
    session.hooks = {event: list(hooks) for event, hooks in template.hooks.items()}
    if verify is True:
        session.verify = template.verify
    owned: List[Any] = []
    # requests picks the adapter with the longest matching prefix; mounting in the
    # template's order keeps its choice.
    session.adapters.clear()
    for prefix, adapter in template.adapters.items():
        if _is_default_adapter(adapter):
            adapter = new_adapter()
            owned.append(adapter)
        session.mount(prefix, adapter)
    return session, owned
