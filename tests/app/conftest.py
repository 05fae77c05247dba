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


@pytest.fixture(autouse=True)
def restore_main_module():
    """Streamlit's AppTest puts its own module in sys.modules['__main__'] (its __file__ the script
    it ran) and leaves it there; a later test whose worker processes are spawned (the sweep's
    process executor) would then re-run that path as the main module and die. Put the real
    __main__ back after every app test."""
    main = sys.modules["__main__"]
    main_file = main.__dict__.get("__file__")
    yield
    sys.modules["__main__"] = main
    if main_file is not None:
        main.__file__ = main_file
