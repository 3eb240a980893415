"""The demo page in a real browser: Debian's Chromium, driven by Selenium, clicks a point.

Needs Chromium and its driver (``.ci/setup`` installs Debian's ``chromium`` and
``chromium-driver`` where it can); skips with the reason where no browser is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from corr import Matcher
from corr.app.render import display_scale, from_display

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "corr" / "samples"


def _need_module(name: str):
    try:
        return __import__(name)
    except ImportError:
        msg = f"{name} is not installed (test extras: pip install -e '.[test]')"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def _browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "no Chromium browser and driver on this machine (bash .ci/setup installs Debian's "
            "`chromium chromium-driver` with apt-get where it can; it could not here)"
        )
    return chromium, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, real_mobilenet):
    """``python -m corr.app`` served from this process (its command line, parsed by the same
    code), on a machine without SD / DINOv2 weights."""
    _need_module("gradio")
    from corr.app.__main__ import launch

    tmp = tmp_path_factory.mktemp("app")
    port = _free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CORR_WEIGHTS_DIR", str(tmp / "weights"))  # no SD/DINOv2 weights here
        mp.setenv("HF_HUB_CACHE", str(tmp / "hf"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        blocks = launch(["--port", str(port), "--device", "cpu"], block=False)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app does not answer on {url}")
                time.sleep(0.2)
        yield url
        blocks.close()


@pytest.fixture(scope="module")
def browser():
    chromium, driver = _browser()
    _need_module("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.add_argument("--window-size=1400,1700")
    d = webdriver.Chrome(service=Service(driver), options=opts)
    yield d
    d.quit()


def _text(d, elem_id: str) -> str:
    from selenium.webdriver.common.by import By

    return d.find_element(By.ID, elem_id).text


def _matches(d) -> list[dict]:
    from selenium.webdriver.common.by import By

    box = d.find_element(By.CSS_SELECTOR, "#matches textarea")
    return json.loads(box.get_attribute("value") or "[]")


def test_click_in_the_browser_gives_the_matchers_point(server, browser, real_mobilenet, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 60)
    d.get(server)
    wait.until(lambda d: "Features ready" in _text(d, "status"))
    assert "weights are missing" in _text(d, "notice")  # the page says it runs the stand-in
    img = d.find_element(By.CSS_SELECTOR, "#source-view img")
    nat_w, nat_h = (int(img.get_attribute(a)) for a in ("naturalWidth", "naturalHeight"))
    box_w, box_h = img.size["width"], img.size["height"]
    # the picture sits in its element as object-fit: contain (centred, aspect kept)
    css = min(box_w / nat_w, box_h / nat_h)
    left, top = (box_w - nat_w * css) / 2, (box_h - nat_h * css) / 2
    src, tgt = str(ASSETS / "tiger_a.jpg"), str(ASSETS / "tiger_b.jpg")
    shown = display_scale(925, 1080, 1024)  # tiger_a is 925 x 1080, sent at <= 1024 px
    assert (nat_w, nat_h) == (round(925 * shown), 1024)

    clicks = [(0.27, 0.75), (0.7, 0.35)]  # where to click, as fractions of the picture
    for n, (fx, fy) in enumerate(clicks, 1):
        ox, oy = left + fx * nat_w * css, top + fy * nat_h * css
        ActionChains(d).move_to_element_with_offset(
            img, ox - box_w / 2, oy - box_h / 2
        ).click().perform()
        wait.until(lambda d, n=n: f"Point {n}:" in _text(d, "status"))
    rows = _matches(d)
    assert [r["point"] for r in rows] == [1, 2]
    # the page got the click where it was made: within 1.5 CSS pixels, in original pixels
    tol = 1.5 / css / shown
    for (fx, fy), row in zip(clicks, rows, strict=True):
        want_xy = from_display((fx * nat_w, fy * nat_h), shown)
        assert row["source_xy"] == pytest.approx(want_xy, abs=tol)

    # the page's answer is Matcher.match's answer for the same click
    m = Matcher([real_mobilenet], device="cpu")
    want = m.match(src, tgt, [r["source_xy"] for r in rows])
    np.testing.assert_allclose([r["target_xy"] for r in rows], want.keypoints1, rtol=0, atol=2e-3)
    np.testing.assert_allclose([r["similarity"] for r in rows], want.confidence, atol=2e-4)
    # the target view shows the heat map (its picture changed from the plain photo)
    tgt_img = d.find_element(By.CSS_SELECTOR, "#target-view img")
    assert int(tgt_img.get_attribute("naturalWidth")) == 1024  # tiger_b: 1239 x 731

    # the flip button says which orientation won, as Matcher.match(flip=True) decides
    d.find_element(By.ID, "flip").click()
    wait.until(lambda d: "Flip alignment:" in _text(d, "status"))
    flip = m.match(src, tgt, [r["source_xy"] for r in rows], flip=True, flip_pairs=[])
    won = "mirrored source wins" if flip.flip["flipped"] else "source as it is wins"
    assert won in _text(d, "status")

    shot = tmp_path / "app.png"
    assert d.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
