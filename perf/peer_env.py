"""The peer's virtual environment: ``perf/.venv-peer`` with fast_bitrix24 from PyPI.

Created on first use; never a dependency of the library.
"""
from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-peer"
PYTHON = VENV / "bin" / "python"
PACKAGE = "fast_bitrix24"


def _has_peer() -> bool:
    if not PYTHON.exists():
        return False
    probe = subprocess.run([str(PYTHON), "-c", "import fast_bitrix24"],
                           capture_output=True, timeout=120)
    return probe.returncode == 0


def ensure() -> Path:
    """Return the peer environment's python, creating the environment if needed."""
    if _has_peer():
        return PYTHON
    print(f"creating {VENV} and installing {PACKAGE} ...", file=sys.stderr, flush=True)
    venv.EnvBuilder(with_pip=True, clear=PYTHON.exists()).create(VENV)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", PACKAGE],
                   check=True, timeout=900)
    if not _has_peer():
        raise RuntimeError(f"{PACKAGE} did not install into {VENV}")
    return PYTHON


def version() -> str:
    out = subprocess.run(
        [str(PYTHON), "-c",
         "import importlib.metadata as m; print(m.version('fast_bitrix24'))"],
        capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or "?"


if __name__ == "__main__":
    print(ensure(), version())
