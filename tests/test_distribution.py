"""What the sdist and the wheel carry: the license, the typing marker, the tests tree.

The sdist ships the whole ``tests`` tree, so pytest runs from an unpacked sdist
(``.ci/run`` does exactly that); the wheel ships the package only. Building both
without an isolated environment takes about a second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def _needed(module: str) -> None:
    # Under CI the test extra is installed, so a missing tool is a failure there.
    if os.environ.get("CI"):
        __import__(module)
    else:
        pytest.importorskip(module)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    _needed("build")
    _needed("setuptools")
    _needed("wheel")
    if not (ROOT / "setup.cfg").exists():
        pytest.skip("not run from a source tree")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    with tarfile.open(sdist) as archive:
        sdist_names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as archive:
        wheel_names = set(archive.namelist())
    return {"sdist": sdist_names, "wheel": wheel_names}


def test_the_wheel_carries_the_typing_marker_and_the_license(built):
    names = built["wheel"]
    assert "bitrix_threaded/py.typed" in names
    assert any(n.endswith(".dist-info/LICENSE") or "/licenses/LICENSE" in n for n in names)
    assert "bitrix_threaded/testing/portal.py" in names  # the fake portal is a feature


def test_the_wheel_carries_no_tests(built):
    assert not [n for n in built["wheel"] if n.startswith("tests/")]


def test_the_sdist_carries_the_license_and_the_build_files(built):
    names = built["sdist"]
    for name in ("LICENSE", "README.md", "pyproject.toml", "setup.cfg", "setup.py",
                 "bitrix_threaded/py.typed"):
        assert name in names, name


def test_the_sdist_carries_the_whole_tests_tree(built):
    present = {
        path.relative_to(ROOT).as_posix()
        for path in TESTS.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    missing = sorted(present - built["sdist"])
    assert not missing
    assert "tests/conftest.py" in built["sdist"]
    assert any(n.startswith("tests/fixtures/") for n in built["sdist"])
    assert any(n.startswith("tests/testing/") for n in built["sdist"])
