import re
from pathlib import Path

from setuptools import setup

# Read the version without importing the package: its dependencies are not
# installed yet when this runs.
VERSION_FILE = Path(__file__).parent / "bitrix_threaded" / "_version.py"
version = re.search(r'__version__ = "([^"]+)"', VERSION_FILE.read_text()).group(1)

setup(version=version)
