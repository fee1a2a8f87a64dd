"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, which `.ci/run` installs) driven by selenium, against the app served on a
loopback port over a real Redis. It loads the live panels, asks for recommendations in the
"try it" panel and clicks one, which must reach the service as a reward of test traffic (not
learned, not counted); real traffic then shows in the live panels."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request

import pytest
from werkzeug.serving import make_server

from app import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no Chromium/chromedriver on this machine (.ci/run "
                                                                   "installs Debian's chromium and chromium-driver)")


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def served(build, open_service):
    service = open_service(build(experiment={"holdout_share": 0.3}))
    server = make_server("127.0.0.1", 0, create_app(deps=service), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield service, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(DRIVER), options=options)
    yield driver
    driver.quit()


def test_dashboard_shows_live_numbers_and_the_try_it_panel_sends_feedback(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    service, url = served
    wait = WebDriverWait(browser, 20)
    text = lambda element_id: browser.find_element(By.ID, element_id).text  # noqa: E731

    browser.get(f"{url}/dashboard?every=300")
    wait.until(lambda _: text("updated") != "never")
    assert text("error") == ""
    assert text("model-version").startswith("v") and text("learn-lag").endswith(" s")
    assert text("learned").isdigit() and text("waiting")[:1].isdigit()

    # try it: recommendations for a user, with probabilities and flags
    user = browser.find_element(By.ID, "user")
    user.clear()
    user.send_keys("u3")
    browser.find_element(By.ID, "recommend").click()
    wait.until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, "#slate tr")) == 5)
    rows = browser.find_elements(By.CSS_SELECTOR, "#slate tr")
    probabilities = [float(r.find_element(By.CLASS_NAME, "probability").text) for r in rows]
    assert all(0 < p <= 1 for p in probabilities)
    assert "event " in text("answer") and " · arm " in text("answer")

    # clicking an item sends a reward; the panel's requests are test traffic: acknowledged,
    # never learned, and out of the experiment's counters
    learned, salt = service.learner.learned, service.config.experiment.salt
    counted = service.store.arm_counts(salt)
    item = rows[0].get_attribute("data-item")
    rows[0].find_element(By.CLASS_NAME, "click-btn").click()
    wait.until(lambda _: "accepted" in text("feedback-status"))
    assert item in text("feedback-status") and "test traffic" in text("answer")
    assert service.learner.learned == learned and service.store.arm_counts(salt) == counted

    # real traffic (not the panel's) shows in the live panels: the arm's impressions and CTR
    decision = _post(f"{url}/recommend", {"user_id": "u3", "k": 5})
    assert _post(f"{url}/feedback", {"event_id": decision["event_id"], "item_id": decision["items"][0]["item_id"],
                                     "reward": 1})["status"] == "accepted"
    assert service.learner.learned == learned + 1
    wait.until(lambda _: text("impr-personalized") != "0" or text("impr-holdout") != "0")
    wait.until(lambda _: "%" in text("ctr-personalized") + text("ctr-holdout"))
    wait.until(lambda _: text("p99").endswith(" ms"))
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-ctr polyline")

    # a canary shows beside the current model, with the rule's verdict
    assert "no canary" in text("canary")
    version = service.learner.snapshot(service.config.snapshot.keep)
    service.store.start_canary(version, 0.5)
    wait.until(lambda _: "running" in text("canary"))
    assert text("canary-model") == f"v{version}" and "the rule says: wait" in text("canary-verdict")
