"""The README's Quickstart runs as written (against the fake portal) and is safe to paste.

Safe means: the only records it writes are the ones it created, and it deletes them
again, so a user trying it on a real portal changes nothing of theirs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
PLACEHOLDER = "https://your-portal.bitrix24.com/rest/1/your-webhook-code/"


def _quickstart() -> str:
    if not README.exists():
        pytest.skip("README.md is not next to the tests")
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the Quickstart lost its code block"
    return match.group(1)


def test_the_quickstart_runs_and_leaves_the_portal_as_it_was(fake_portal):
    code = _quickstart()
    assert PLACEHOLDER in code
    before = {entity: fake_portal.ids(entity) for entity in ("deal", "contact", "company")}
    namespace: dict = {}
    exec(compile(code.replace(PLACEHOLDER, fake_portal.webhook), "README.md", "exec"),
         namespace)
    namespace["bx"].close()
    assert {entity: fake_portal.ids(entity) for entity in before} == before
    assert len(namespace["new_ids"]) == 2


def test_the_quickstart_writes_only_what_it_created():
    code = _quickstart()
    for line in code.splitlines():
        if re.search(r"\.(update|delete)\b", line):
            assert "new_ids" in line, line
