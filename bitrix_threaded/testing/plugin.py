"""pytest plugin: fixtures that start the fake portal.

- ``fake_portal``: a running portal in the ``instant`` profile with a small
  data set (120 deals, 60 leads, 30 contacts, 20 companies, 80 tasks, 10 users);
- ``fake_portal_factory``: ``fake_portal_factory(**FakePortal arguments)``
  returns a started portal; every portal it made is stopped at teardown.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List

import pytest

SMALL_DATA_SET: Dict[str, Any] = {
    "deals": 120, "leads": 60, "contacts": 30, "companies": 20, "tasks": 80, "users": 10,
}


@pytest.fixture
def fake_portal() -> Iterator[Any]:
    """A started FakePortal (instant profile, small data set), stopped after the test."""
    from bitrix_threaded.testing import FakePortal

    with FakePortal(**SMALL_DATA_SET) as portal:
        yield portal


@pytest.fixture
def fake_portal_factory() -> Iterator[Callable[..., Any]]:
    """Call with FakePortal arguments to get started portals, all stopped after the test."""
    from bitrix_threaded.testing import FakePortal

    started: List[Any] = []

    def factory(**kwargs: Any) -> Any:
        portal = FakePortal(**kwargs)
        portal.start()
        started.append(portal)
        return portal

    yield factory
    for portal in reversed(started):
        portal.stop()
