"""Progress bars that show only where someone is watching.

A bar is drawn when standard error is a terminal, or as a widget in a Jupyter
notebook (``tqdm.auto``); cron logs, gunicorn logs and redirected output get nothing
(tqdm's ``disable=None``). ``BITRIX_THREADED_PROGRESS`` forces the choice for every
client in the process: ``1`` draws bars even into a file or pipe, ``0`` draws none.
``Bitrix(verbose=False)`` draws none whatever the environment says.

Thread safety: each bar belongs to the call that made it; tqdm serialises writes to
the shared stream with its own lock.
"""

from __future__ import annotations

import os
from typing import Any, Optional

__all__ = ["PROGRESS_ENV", "forced_choice", "progress_bar"]

PROGRESS_ENV = "BITRIX_THREADED_PROGRESS"
_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}


def forced_choice() -> Optional[bool]:
    """True or False when ``BITRIX_THREADED_PROGRESS`` forces bars on or off, else None.

    Values other than 0/1 (and false/true, no/yes, off/on) are ignored: a stray value
    in a cron job's environment should not stop the job.
    """
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    return None


def progress_bar(total: Optional[int], desc: str, unit: str) -> Any:
    """A started ``tqdm.auto`` bar on standard error; disabled where no one watches."""
    # Imported here: tqdm.auto pulls in asyncio and probes for IPython, a cost every
    # import of the client would otherwise pay.
    from tqdm.auto import tqdm

    forced = forced_choice()
    disable = None if forced is None else not forced
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=disable)
