"""The fake Bitrix24 portal: a real HTTP server on loopback for tests and benchmarks.

>>> from bitrix_threaded.testing import FakePortal
>>> with FakePortal(deals=1_000) as portal:          # doctest: +SKIP
...     requests.post(portal.webhook + "crm.deal.list", json={"start": 0}).json()

pytest users get the ``fake_portal`` and ``fake_portal_factory`` fixtures;
the shell gets ``python -m bitrix_threaded.testing serve``.
"""
from __future__ import annotations

from .limits import ManualClock
from .oauth import OAuthCredentials
from .portal import FakePortal
from .profiles import PROFILES, CostProfile

__all__ = ["PROFILES", "CostProfile", "FakePortal", "ManualClock", "OAuthCredentials"]
