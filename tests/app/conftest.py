import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "app" / "app_pages"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("streamlit")


@pytest.fixture
def page():
    from streamlit.testing.v1 import AppTest

    def make(name: str):
        at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=30)
        return at
    return make
