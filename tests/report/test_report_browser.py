"""Headless-Chromium end-to-end check of the policy-evaluation report.

Why a real browser: the HTML tests prove the markup and the files are right; only a browser proves
that what a reader sees works — the pages render under their Content-Security-Policy, every plot
actually decodes (``naturalWidth > 0``), links navigate, a hostile label is shown as text (no
alert, no console error) and the console stays free of errors such as 404s for missing images.
It also leaves screenshots of the index and an episode page as CI artifacts.

Browser discovery: ``WORLD_MONITOR_CHROMIUM`` / ``WORLD_MONITOR_CHROMEDRIVER`` if set, else
``chromium`` (or ``chromium-browser`` / ``google-chrome``) and ``chromedriver`` on ``PATH``, else
``/usr/bin/chromium`` and ``/usr/bin/chromedriver``; selenium 4 drives it with explicit paths, so
Selenium Manager never downloads anything. Without them the test is skipped, unless
``WORLD_MONITOR_REQUIRE_BROWSER=1`` (CI, which installs them): then it fails. Screenshots go to
``$WORLD_MONITOR_ARTIFACTS`` or ``<repo>/test-artifacts``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from world_monitor.report.serve import make_server

REPO = Path(__file__).resolve().parents[2]
EVIL_LABEL = 'diffusion <script>alert("x")</script> & co'
EPISODE = "scripted_lighting_s1_gated"
ODD_ID = "diffusion unseen#1 gated"


def _unavailable(reason: str) -> None:
    """Skip — or fail where the environment promises a browser (CI)."""
    if os.environ.get("WORLD_MONITOR_REQUIRE_BROWSER") == "1":
        pytest.fail(f"WORLD_MONITOR_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _find(env: str, names: tuple[str, ...], fallback: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env] if os.access(os.environ[env], os.X_OK) else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return fallback if os.access(fallback, os.X_OK) else None


def _artifacts() -> Path:
    out = Path(os.environ.get("WORLD_MONITOR_ARTIFACTS") or REPO / "test-artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver), or skip / fail before anything expensive is built."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed (pip install 'selenium>=4.11')")
    chromium = _find(
        "WORLD_MONITOR_CHROMIUM",
        ("chromium", "chromium-browser", "google-chrome"),
        "/usr/bin/chromium",
    )
    chromedriver = _find("WORLD_MONITOR_CHROMEDRIVER", ("chromedriver",), "/usr/bin/chromedriver")
    if chromium is None or chromedriver is None:
        _unavailable(f"chromium ({chromium}) or chromedriver ({chromedriver}) not found")
    return chromium, chromedriver


@pytest.fixture
def driver(
    browser_paths: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A headless Chromium session with browser console logging enabled."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = browser_paths
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download a browser
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        drv = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    except Exception as exc:  # a broken install is "unavailable", but say exactly why
        _unavailable(f"cannot start {chromium} via {chromedriver}: {exc}")
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


@pytest.fixture
def server_url(built_run_dir: Path) -> Iterator[str]:
    """The run directory served on a free loopback port (as ``world-monitor serve`` would)."""
    server = make_server(built_run_dir, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _images(drv: Any) -> list[dict[str, Any]]:
    """Every <img> once loading has finished: id, src, naturalWidth."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, 30).until(
        lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)")
    )
    return drv.execute_script(
        "return Array.from(document.images).map("
        "i => ({id: i.id, src: i.getAttribute('src'), w: i.naturalWidth}))"
    )


def _open_episode(drv: Any, episode_id: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    links = [
        a for a in drv.find_elements(By.CSS_SELECTOR, "a.episode-link") if a.text == episode_id
    ]
    assert len(links) == 1, episode_id
    links[0].click()
    WebDriverWait(drv, 30).until(ec.presence_of_element_located((By.ID, "timeline")))
    assert drv.find_element(By.TAG_NAME, "h1").text == f"Episode {episode_id}"


def test_report_renders_in_headless_chromium(
    browser_paths: tuple[str, str], driver: Any, server_url: str, built_run_dir: Path
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    summary = json.loads((built_run_dir / "summary.json").read_text())
    artifacts = _artifacts()
    logs: list[dict[str, Any]] = []

    # ---- index: summary rows, acceptance, plots
    driver.set_window_size(1400, 2600)
    driver.get(f"{server_url}/")  # redirected to report/index.html
    assert urlsplit(driver.current_url).path == "/report/index.html"
    assert driver.title.startswith("Policy evaluation")
    rows = driver.find_elements(By.CSS_SELECTOR, "table#summary tbody tr")
    got = [[c.text for c in r.find_elements(By.TAG_NAME, "td")[:3]] for r in rows]
    want = [[r["policy"], r["scenario"], str(r["n"])] for r in summary["rows"]]
    assert got == want
    assert EVIL_LABEL in [g[0] for g in got]  # the hostile label is text on screen
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - accessing it is the check
    assert driver.find_element(By.ID, "acceptance-verdict").text == "2/3 checks passed"
    images = _images(driver)
    by_id = {i["id"]: i for i in images if i["id"]}
    assert by_id["plot-summary"]["w"] > 0 and by_id["plot-risk"]["w"] > 0
    assert all(i["w"] > 0 for i in images), images
    assert {i["src"] for i in images} >= {"img/evaluate/roc_all.png", "img/figures/reliability.png"}
    driver.save_screenshot(str(artifacts / "report_index.png"))
    logs += driver.get_log("browser")

    # ---- an episode page reached through its link: timeline, strip, recording, pair
    driver.set_window_size(1400, 1600)
    _open_episode(driver, EPISODE)
    images = {i["id"]: i for i in _images(driver)}
    assert images["timeline"]["w"] > 0 and images["strip"]["w"] > 0
    mcap_href = driver.find_element(By.ID, "mcap-link").get_attribute("href")
    assert urlsplit(mcap_href).path == f"/episodes/{EPISODE}.mcap"
    conn = http.client.HTTPConnection(urlsplit(mcap_href).netloc, timeout=10)
    conn.request("GET", urlsplit(mcap_href).path)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read().startswith(b"\x89MCAP")
    conn.close()
    alerts = driver.find_elements(By.CSS_SELECTOR, "table#alerts tbody tr")
    assert [a.find_elements(By.TAG_NAME, "td")[2].text for a in alerts] == ["SLOW", "STOP"]
    driver.save_screenshot(str(artifacts / "report_episode.png"))
    logs += driver.get_log("browser")

    driver.find_element(By.ID, "paired-link").click()
    assert driver.find_element(By.TAG_NAME, "h1").text == "Episode scripted_lighting_s1_open"
    assert {i["id"]: i for i in _images(driver)}["timeline"]["w"] > 0

    # ---- back to the index, then the episode whose id needs quoting ('#', ' ')
    driver.find_element(By.ID, "index-link").click()
    _open_episode(driver, ODD_ID)
    images = {i["id"]: i for i in _images(driver)}
    assert images["timeline"]["w"] > 0 and images["strip"]["w"] > 0  # animated WebP strip
    assert images["strip"]["src"].endswith(".webp")
    logs += driver.get_log("browser")

    # ---- the same report opened from disk (file://), as from an archived CI artifact
    driver.get((built_run_dir / "report" / "index.html").as_uri())
    assert all(i["w"] > 0 for i in _images(driver))
    _open_episode(driver, EPISODE)
    assert {i["id"]: i for i in _images(driver)}["timeline"]["w"] > 0
    logs += driver.get_log("browser")

    (artifacts / "report_browser_log.json").write_text(json.dumps(logs, indent=1))
    severe = [entry for entry in logs if entry.get("level") == "SEVERE"]
    assert not severe, severe
