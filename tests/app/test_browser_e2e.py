"""End-to-end test of `attnsim app` in a real browser (Debian's headless Chromium driven by Selenium).

Starts `attnsim app` on a free loopback port, opens the Explore page, moves the "SM count" slider with the
keyboard and checks that the "Latency" metric changes. A second test opens every page in the app's navigation
and checks that none shows an exception.

Screenshots are written to the test's tmp_path, and also to $ATTNSIM_SCREENSHOTS when it is set:
    ATTNSIM_SCREENSHOTS=docs/img python -m pytest tests/app/test_browser_e2e.py
writes docs/img/app_<page>.png (app_explore.png, app_compare.png, ...).

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian packages chromium, chromium-driver; .ci/run installs
them as root) and the selenium package. Nothing is downloaded: the driver path is given, so Selenium Manager
never runs, and Chromium runs with a fresh profile and its background networking off.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SERVER_START_S = 60      # the app answers /_stcore/health within this
PAGE_S = 60              # a page (or a rerun after an input) renders within this
BROWSER_START_S = 30     # chromedriver + chromium start within this

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed; .ci/run installs it"),
    pytest.mark.skipif(not CHROMEDRIVER.is_file(),
                       reason="Debian's chromium-driver is not installed; .ci/run installs it"),
]

pytest.importorskip("streamlit", reason="attnsim app needs streamlit (pip install streamlit)")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (pip install selenium)")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# The value text of the st.metric whose label is exactly `label` (null when there is none).
METRIC_JS = """
const want = arguments[0];
for (const m of document.querySelectorAll('[data-testid="stMetric"]')) {
  const lab = m.querySelector('[data-testid="stMetricLabel"]');
  const val = m.querySelector('[data-testid="stMetricValue"]');
  if (lab && val && lab.innerText.trim() === want) return val.innerText.trim();
}
return null;
"""

# The thumb of the st.slider whose label is exactly `label` (null when there is none): an element with
# role=slider, explicit (older Streamlit) or implicit (an <input type=range>, Streamlit >= 1.50's React Aria slider).
SLIDER_JS = """
const want = arguments[0];
for (const s of document.querySelectorAll('[data-testid="stSlider"]')) {
  const lab = s.querySelector('[data-testid="stWidgetLabel"]');
  if (lab && lab.innerText.trim() === want) return s.querySelector('[role="slider"], input[type="range"]');
}
return null;
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it is still there after 10 s."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`attnsim app` on a free loopback port; the server is always stopped afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("app_server") / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "attnsim.cli", "app", "--port", str(port), "--address", "127.0.0.1"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)  # its own process group: _stop reaches everything it started
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"attnsim app exited with {proc.returncode} before answering:\n{_log_tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"attnsim app did not answer {url}/_stcore/health within {SERVER_START_S} s:\n"
                            f"{_log_tail(log)}")
            time.sleep(0.25)
        assert f"attnsim app: {url}" in log.read_text(errors="replace"), "the launcher prints its address first"
        yield url
    finally:
        _stop(proc)
    assert proc.poll() is not None, "the app server is still running"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile; always quit (and the driver killed) afterwards."""
    from selenium.webdriver.chrome.service import Service
    profile = tmp_path_factory.mktemp("chromium_profile")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
                "--metrics-recording-only", "--password-store=basic", "--window-size=1400,1000",
                f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile.parent / "chromedriver.log"))
    service.start_error_message = "chromedriver did not start"
    driver = webdriver.Chrome(service=service, options=opts)  # explicit driver: Selenium Manager never runs
    try:
        driver.set_page_load_timeout(PAGE_S)
        driver.set_script_timeout(PAGE_S)
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            proc = getattr(service, "process", None)
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _wait(driver, what: str, cond, timeout: float = PAGE_S):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: cond(d))
    except TimeoutException:
        pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


# A snapshot of the page: whether a script run shows as in progress, and a fingerprint of what is on screen.
# Streamlit shows stStatusWidget while a script runs (after a short delay), stSkeleton before the first
# element arrives, and marks elements of the previous run data-stale while rerunning.
STATE_JS = """
const busy = document.querySelector(
    '[data-testid="stStatusWidget"], [data-testid="stSkeleton"], [data-stale="true"]') !== null;
const main = document.querySelector('[data-testid="stMainBlockContainer"]');
const n = main ? main.querySelectorAll('[data-testid="stElementContainer"]').length : 0;
return [busy, n, n + ':' + document.querySelectorAll('[data-testid]').length + ':' + (main ? main.innerText.length : 0)];
"""


def _wait_settled(driver, what: str, timeout: float = PAGE_S, quiet_s: float = 1.5) -> None:
    """Wait until the page shows elements, no run is in progress, and nothing changed for `quiet_s` seconds
    (the status widget appears only some time after a run starts, so one idle look is not enough)."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while True:
        busy, n, fingerprint = driver.execute_script(STATE_JS)
        now = time.monotonic()
        if busy or n == 0 or fingerprint != last:
            last, since = (None if busy else fingerprint), now
        elif now - since >= quiet_s:
            return
        if now > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def _nav_links(driver) -> dict[str, str]:
    """Page title -> URL of the app's navigation (sidebar or top)."""
    links = {}
    for a in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNavLink"], [data-testid="stTopNavLink"]'):
        title, href = a.text.strip(), a.get_attribute("href")
        if title and href:
            links.setdefault(title, href)
    return links


def _open_page(driver, base_url: str, title: str) -> None:
    """Open the app, then its page called `title` (the app's first page when it has no navigation)."""
    driver.get(base_url)
    _wait_settled(driver, "the app to render")
    links = _nav_links(driver)
    href = next((h for t, h in links.items() if t.lower() == title.lower()), None)
    if href is None and links:
        pytest.fail(f"no page {title!r} in the app's navigation: {sorted(links)}")
    if href is not None and driver.current_url.rstrip("/") != href.rstrip("/"):
        driver.get(href)
        _wait_settled(driver, f"the {title} page to render")


def _slider_value(thumb, which: str) -> float | None:
    """aria-value{min,now} of a role=slider thumb, or min/value of an <input type=range>."""
    text = thumb.get_attribute(f"aria-value{which}") or thumb.get_attribute({"min": "min", "now": "value"}[which])
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _fit_window_to_content(driver) -> None:
    """Grow the window to the page's content height (up to 4000 px) so the screenshot shows all of it."""
    height = driver.execute_script("""
        const main = document.querySelector('[data-testid="stMain"]') || document.scrollingElement;
        return Math.max(main.scrollHeight, document.documentElement.scrollHeight);""")
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, int(min(max(height + 120, 800), 4000)))
    time.sleep(0.5)  # relayout


def _screenshot(driver, name: str, tmp_path: Path) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), f"screenshot {path} failed"
    assert path.stat().st_size > 1000, f"screenshot {path} is empty"
    if os.environ.get("ATTNSIM_SCREENSHOTS"):
        dest = Path(os.environ["ATTNSIM_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / name)
    return path


def _assert_no_exception(driver, page: str) -> None:
    errors = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], [data-testid="stAlertContainer"] '
                                                   '[data-testid="stAlertContentError"]')
    texts = [e.text[:500] for e in errors if e.is_displayed()]
    assert not texts, f"the {page} page shows an error: {texts}"


def test_explore_latency_follows_sm_count(app_url, browser, tmp_path):
    driver = browser
    driver.set_window_size(1400, 1000)
    _open_page(driver, app_url, "Explore")
    before = _wait(driver, 'the "Latency" metric', lambda d: d.execute_script(METRIC_JS, "Latency"))
    _assert_no_exception(driver, "Explore")

    thumb = _wait(driver, 'the "SM count" slider', lambda d: d.execute_script(SLIDER_JS, "SM count"))
    low, now = _slider_value(thumb, "min"), _slider_value(thumb, "now")
    # Focus the thumb (it may be a visually hidden <input>) and press keys into the focused element:
    # Home jumps to the minimum SM count; when it is already there, End goes to the maximum instead.
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", thumb)
    assert driver.execute_script("return document.activeElement === arguments[0];", thumb), "slider not focused"
    keys = (Keys.END,) if now is not None and low is not None and now <= low else (Keys.LEFT, Keys.HOME)
    ActionChains(driver).send_keys(*keys).perform()

    def changed(d):
        value = d.execute_script(METRIC_JS, "Latency")
        return value if value not in (None, before) else None

    try:
        after = WebDriverWait(driver, PAGE_S, poll_frequency=0.2).until(changed)
    except TimeoutException:
        _screenshot(driver, "app_explore_failed.png", tmp_path)
        pytest.fail(f'"Latency" stayed {before!r} for {PAGE_S} s after moving "SM count" '
                    f"(slider {now} -> {_slider_value(thumb, 'now')}); screenshot in {tmp_path}")
    _wait_settled(driver, "the Explore page to finish its rerun")
    after = driver.execute_script(METRIC_JS, "Latency")
    assert after not in (None, before)
    assert re.search(r"\d", after), f"Latency value {after!r} has no number"
    _assert_no_exception(driver, "Explore")
    shot = _screenshot(driver, "app_explore_sm_changed.png", tmp_path)
    assert shot.is_file()


def test_every_page_renders(app_url, browser, tmp_path):
    """Open each page of the navigation, check it shows no exception, and screenshot it (app_<page>.png)."""
    driver = browser
    driver.set_window_size(1400, 1000)
    driver.get(app_url)
    _wait_settled(driver, "the app to render")
    pages = _nav_links(driver) or {"Explore": app_url}
    for title, href in pages.items():
        driver.set_window_size(1400, 1000)
        driver.get(href)
        _wait_settled(driver, f"the {title} page to render")
        _wait(driver, f"the {title} page to show content",
              lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stMainBlockContainer"] [data-testid]'))
        time.sleep(1.0)  # charts (Vega/Plotly) draw after the script run ends
        _assert_no_exception(driver, title)
        _fit_window_to_content(driver)
        slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or "page"
        _screenshot(driver, f"app_{slug}.png", tmp_path)
