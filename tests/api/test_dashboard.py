"""The web dashboard in a real headless Chromium, end to end against `sigma serve`: a user signs in, picks a pack,
creates a model (the form says what is wrong as they type), sweeps it, trains the top row, paper-trades it, publishes
it, and sees an alert arrive. A screenshot of each page is kept (SIGMA_TEST_ARTIFACTS, or the test's folder)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

from flows.redis_server import RedisServer
from flows.sinks import AlertSink
from tests.api.test_api import _private
from tests.api.test_jobs import PATIENCE, _Serve, desk  # noqa: F401 (the fixture)
from tests.flows.test_redis import _alert

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and DRIVER):
        reason = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("SIGMA_REQUIRE_SHARED_DATA") == "1" or os.environ.get("CI") == "true":
            pytest.fail(reason + "; .ci/run installs them")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def alerts_redis(tmp_path):
    server = RedisServer(tmp_path / "alerts-redis").start()
    yield server
    server.stop()


def test_a_trader_walks_from_a_pack_to_a_live_alert_in_the_browser(desk, browser, alerts_redis, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    home, clients, serve = desk
    serve.kill()  # again, with the live flow's Redis: the alert history and the live stream
    serve = _Serve(home, redis_url=alerts_redis.url).start()
    token = clients["alice"].headers["Authorization"].split()[1]
    shots = Path(os.environ.get("SIGMA_TEST_ARTIFACTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    wait = WebDriverWait(browser, PATIENCE, poll_frequency=0.2)
    find = browser.find_element

    def shot(name: str) -> None:
        browser.save_screenshot(str(shots / f"{name}.png"))

    def text_of(selector: str) -> str:
        return find(By.CSS_SELECTOR, selector).text

    try:
        browser.get(f"http://127.0.0.1:{serve.port}/")
        shot("1-login")
        find(By.ID, "token").send_keys("sig_wrong")
        find(By.CSS_SELECTOR, "#login-form button").click()
        wait.until(lambda _: "unknown or revoked" in text_of("#login-why"))
        find(By.ID, "token").clear()
        find(By.ID, "token").send_keys(token)
        find(By.CSS_SELECTOR, "#login-form button").click()
        wait.until(lambda _: "alice · pro" in text_of("#who"))

        # Packs: cards with their personality; a private pack kept from the page gets its own card; filters narrow them.
        wait.until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, ".card")) >= 3)
        browser.execute_script("document.getElementById('pack-yaml').value = arguments[0];", _private("alice_swing", name="alices").decode())
        find(By.ID, "pack-save").click()
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, '.card[data-pack="alice_swing@1.0.0"] .delete-pack'))
        assert "APPROVED" in text_of("#pack-report")
        shot("2-packs")
        find(By.ID, "pack-search").send_keys("swingsigma")
        wait.until(lambda _: len(browser.find_elements(By.CSS_SELECTOR, ".card")) == 1)
        find(By.CSS_SELECTOR, ".card .use-pack").click()

        # The model builder: a wrong field is named as the user types, the right one clears it.
        wait.until(lambda _: find(By.ID, "models").is_displayed())
        Select(find(By.ID, "m-strategy")).select_by_visible_text("momentum_swing")
        Select(find(By.ID, "m-risk")).select_by_visible_text("aggressive")
        find(By.ID, "m-evaluation").send_keys("7x")
        wait.until(lambda _: "not a cadence" in text_of('[data-why="evaluation"]') or "7x" in text_of('[data-why="evaluation"]'))
        shot("3-model-builder-error")
        find(By.ID, "m-evaluation").clear()
        find(By.ID, "m-evaluation").send_keys("1d")
        find(By.ID, "m-name").send_keys("spy")
        wait.until(lambda _: text_of('[data-why="evaluation"]') == "")
        find(By.ID, "m-create").click()
        wait.until(lambda _: "alice_spy" in text_of("#model-rows"))
        shot("4-models")

        # A simple sweep, its live progress, the leaderboard, the top row trained.
        find(By.CSS_SELECTOR, ".sweep-model").click()
        wait.until(lambda _: text_of("#s-estimate").startswith("about "))  # measured before it starts
        find(By.ID, "s-start").click()
        wait.until(lambda _: "finished" in text_of("#sweep-rows"))
        find(By.CSS_SELECTOR, "#sweep-rows .results").click()
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, ".row-pick:not([disabled])"))
        shot("5-leaderboard")
        browser.find_elements(By.CSS_SELECTOR, ".row-pick:not([disabled])")[0].click()
        find(By.ID, "train-rows").click()
        wait.until(lambda _: "trained" in text_of("#trained-rows") and "Review" in text_of("#trained-rows"))
        find(By.CSS_SELECTOR, "#trained-rows .review").click()
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "img.review"))
        shot("6-trained-review")

        # Paper trading over the last half year, judged by the trust gate.
        find(By.CSS_SELECTOR, "#trained-rows .paper-start").click()
        prompt = wait.until(lambda _: browser.switch_to.alert)
        prompt.send_keys("2024-06-01")
        prompt.accept()
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#paper-rows .paper-report"))  # done, and judged
        find(By.CSS_SELECTOR, "#paper-rows .paper-report").click()
        wait.until(lambda _: "trust gate" in text_of("#paper-report"))
        shot("7-paper")

        # Publish: through the gates, or over them with a reason for the audit log.
        find(By.CSS_SELECTOR, '#tabs [data-tab="trained"]').click()
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, "#trained-rows .publish"))
        trained_id = text_of("#trained-rows td")
        api = httpx.Client(timeout=120, base_url=f"http://127.0.0.1:{serve.port}", headers={"Authorization": f"Bearer {token}"})
        [run] = api.get("/api/paper").json()
        refused = api.get(f"/api/trained/{trained_id}").json()["refusal"] or run["verdict"]["status"] == "FAIL"
        find(By.CSS_SELECTOR, "#trained-rows .publish").click()
        if refused:  # the page names the verdict and asks for a reason to publish over it (audited)
            asked = wait.until(lambda _: browser.switch_to.alert)
            assert "may not go live" in asked.text or "not publishable" in asked.text
            asked.send_keys("browser test")
            asked.accept()
        wait.until(lambda _: "live" in text_of("#trained-rows"))

        # An alert of the published model arrives on the dashboard as the flow writes it, and is acknowledged.
        find(By.CSS_SELECTOR, '#tabs [data-tab="alerts"]').click()
        wait.until(lambda _: "following" in text_of("#live-state"))
        writer = AlertSink(alerts_redis.url).build("alerts", 0, 1)
        writer.write_batch([_alert(1, trained_id)])
        writer.close()
        wait.until(lambda _: browser.find_elements(By.CSS_SELECTOR, f'tr[data-alert="{trained_id}:SPY:1:open"]'))
        shot("8-alerts")
        find(By.CSS_SELECTOR, f'tr[data-alert="{trained_id}:SPY:1:open"] .ack').click()
        wait.until(lambda _: "acknowledged" in text_of(f'tr[data-alert="{trained_id}:SPY:1:open"]'))
        wait.until(lambda _: trained_id in text_of("#track-rows"))  # the track record beside the alerts
        history = api.get("/api/alerts").json()
        api.close()
        assert [(a["alert_id"], a["acknowledged_at"] is not None) for a in history] == [(f"{trained_id}:SPY:1:open", True)]
    finally:
        shot("last")
        serve.stop()
