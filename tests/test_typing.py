"""A user's script that uses the public API passes ``mypy --strict``.

The package ships ``py.typed`` (checked in the wheel by test_distribution); this test
points mypy at wherever the package is imported from, so it also works for an
editable install, whose import hook mypy cannot follow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bitrix_threaded

USER_SCRIPT = '''
from __future__ import annotations

from typing import Any, Dict, List

import requests

from bitrix_threaded import (
    BatchError, Bitrix, BitrixError, CommandFailure, IdRanges, RetryPolicy, Strategy,
)
from bitrix_threaded.testing import FakePortal


def export(webhook: str) -> List[Any]:
    session = requests.Session()
    with Bitrix(webhook, None, False, True, 50, 2.0, 50, 480, session, True,
                retry=RetryPolicy(max_attempts=3), timeout=30.0) as bx:
        strategy: type[Strategy] = IdRanges
        deals: List[Any] = bx.get_all("crm.deal.list", {"select": ["ID"]},
                                      strategy=strategy)
        by_id: Dict[Any, Any] = bx.get_by_ID("crm.deal.get", [1, 2])
        try:
            bx.call("crm.deal.update", [{"ID": 1, "fields": {"TITLE": "x"}}])
        except BatchError as exc:
            failures: List[CommandFailure] = list(exc.failures)
            print(failures, by_id)
        except BitrixError as exc:
            print(exc.code, exc.description, exc.method)
        return deals


with FakePortal(deals=3) as portal:
    print(len(export(portal.webhook)))
'''


def _mypy_available() -> None:
    if os.environ.get("CI"):
        import mypy  # noqa: F401  (the test extra installs it; missing is a failure)
    else:
        pytest.importorskip("mypy")


def test_a_user_script_passes_mypy_strict(tmp_path: Path) -> None:
    _mypy_available()
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    env = dict(os.environ)
    home = Path(bitrix_threaded.__file__).resolve().parent.parent
    if home.name not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = str(home)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports",
         "--follow-imports=silent", "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), str(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
