"""The web console end to end in headless Chromium from Debian (issue 15, item 4): log in, the
numbers match `exastor stats --json`, upload and download a file, create a user, pause and run the
reducer; screenshots saved. Plus the login, session and CSRF rules without a browser.

Needs `chromium` and `chromium-driver` (Debian packages; .ci/run installs them). The test installs
nothing; it is skipped, saying why, only when Chromium cannot start. Set EXASTOR_CONSOLE_SHOTS=DIR
to write the screenshots there too (docs/console/ holds a committed set)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

from conftest import exastor, free_port, s3_client, start_server

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,1000"]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    admin = free_port()
    drives = [a for i in range(3) for a in ("--drive", str(tmp / f"d{i}"))]
    server = start_server(tmp, "--admin-port", str(admin), *drives, env={"EXASTOR_REDUCE_INTERVAL": "0"})
    server.admin_url = f"http://127.0.0.1:{admin}"
    yield server
    server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]


def _browser(download_dir: Path):
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("Chromium is not installed (apt-get install -y chromium chromium-driver; .ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    try:
        return webdriver.Chrome(service=Service(DRIVER), options=options)
    except WebDriverException as exc:
        pytest.skip(f"Chromium cannot start here: {exc.msg}")


def _wait(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _click(browser, by: str, selector: str, what: str) -> None:
    """Find and click, again if the page re-rendered the element in between (it refreshes every 5 s)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def attempt() -> bool:
        try:
            browser.find_element(by, selector).click()
            return True
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    _wait(attempt, what=what)


def test_console_in_chromium(console, tmp_path):
    from selenium.webdriver.common.by import By

    s3 = s3_client(console)
    s3.create_bucket(Bucket="console")
    text = b"every line of this file is much like the line before it\n" * 4000
    for i in range(3):
        s3.put_object(Bucket="console", Key=f"data/part-{i}.txt", Body=text + bytes([i]))
    shots = [tmp_path / "shots"] + ([Path(os.environ["EXASTOR_CONSOLE_SHOTS"])]
                                    if os.environ.get("EXASTOR_CONSOLE_SHOTS") else [])
    for d in shots:
        d.mkdir(parents=True, exist_ok=True)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = _browser(downloads)

    def shot(name: str) -> None:
        for d in shots:
            browser.save_screenshot(str(d / f"{name}.png"))

    def el(element_id: str):
        return browser.find_element(By.ID, element_id)

    try:
        browser.get(console.admin_url + "/")
        _wait(lambda: el("login").is_displayed(), what="the login form")
        el("login-access").send_keys(console.access_key)
        el("login-secret").send_keys("not the secret")
        el("login-submit").click()
        _wait(lambda: "wrong access key" in el("login-error").text, what="the refusal")
        el("login-secret").clear()
        el("login-secret").send_keys(console.secret_key)
        shot("login")
        el("login-submit").click()
        _wait(lambda: el("app").is_displayed() and el("ov-objects").get_attribute("data-value"),
              what="the overview")

        # the overview shows what `exastor stats --json` says
        stats = json.loads(exastor("stats", "--json", data_dir=console.data_dir).stdout)
        fields = {"ov-objects": stats["objects"], "ov-buckets": stats["buckets"],
                  "ov-logical": stats["logical_bytes"], "ov-stored": stats["stored_bytes"],
                  "red-backlog": stats["reducer"]["backlog_bytes"],
                  "red-backlog-objects": stats["reducer"]["backlog_objects"]}
        for element_id, want in fields.items():
            assert float(el(element_id).get_attribute("data-value")) == want, element_id
        assert abs(float(el("ov-ratio").get_attribute("data-value")) - stats["reduction_ratio"]) < 1e-3
        assert el("ov-ratio").text == f"{stats['reduction_ratio']:.2f}x"
        assert stats["reducer"]["backlog_objects"] == 3
        assert float(el("ov-raw").get_attribute("data-value")) > stats["stored_bytes"]  # replicas on 3 drives
        shot("overview")

        # the reducer: pause, then a pass on request (paused or not), as `exastor reduce` sees it
        el("red-pause").click()
        _wait(lambda: json.loads(exastor("reduce", "status", "--json", data_dir=console.data_dir).stdout)["paused"],
              what="the pause")
        el("red-run").click()
        _wait(lambda: json.loads(exastor("reduce", "status", "--json",
                                         data_dir=console.data_dir).stdout)["backlog_objects"] == 0,
              what="the requested pass")
        browser.refresh()
        _wait(lambda: el("red-backlog-objects").get_attribute("data-value") == "0", what="the backlog at 0")
        assert el("red-state").text == "paused"
        el("red-resume").click()
        _wait(lambda: not json.loads(exastor("reduce", "status", "--json",
                                             data_dir=console.data_dir).stdout)["paused"], what="the resume")

        # drives
        browser.find_element(By.CSS_SELECTOR, "a[data-view=drives]").click()
        states = "return [...document.querySelectorAll('#drives tbody tr')].map(r => r.dataset.state)"
        _wait(lambda: browser.execute_script(states) == ["active"] * 3, what="3 active drives")
        shot("drives")

        # buckets: browse, upload, download
        browser.find_element(By.CSS_SELECTOR, "a[data-view=buckets]").click()
        _click(browser, By.CSS_SELECTOR, "a[data-bucket=console]", "the bucket")
        _click(browser, By.XPATH, "//table[@id='objects']//a[text()='data/']", "the prefix")
        keys = "return [...document.querySelectorAll('#objects tr[data-key]')].map(r => r.dataset.key)"
        _wait(lambda: len(browser.execute_script(keys)) == 3, what="3 objects")
        upload = tmp_path / "uploaded.bin"
        body = os.urandom(300_000)
        upload.write_bytes(body)
        el("upload-file").send_keys(str(upload))
        el("upload-submit").click()
        _wait(lambda: "data/uploaded.bin" in browser.execute_script(keys), what="the upload")
        assert s3.get_object(Bucket="console", Key="data/uploaded.bin")["Body"].read() == body
        shot("buckets")
        _click(browser, By.CSS_SELECTOR, "#objects tr[data-key='data/part-1.txt'] a.download", "the download link")
        got = _wait(lambda: (downloads / "part-1.txt").exists() and (downloads / "part-1.txt").read_bytes(),
                    what="the download")
        assert hashlib.sha256(got).digest() == hashlib.sha256(text + b"\x01").digest()

        # users: create one, its keys work with a real client
        browser.find_element(By.CSS_SELECTOR, "a[data-view=users]").click()
        el("user-name").send_keys("fromconsole")
        el("user-submit").click()
        _wait(lambda: el("new-keys").is_displayed(), what="the new keys")
        access, secret = el("new-access").text, el("new-secret").text
        assert re.fullmatch(r"EX[A-Z0-9]{18}", access) and len(secret) == 40
        assert "fromconsole" in exastor("user", "list", data_dir=console.data_dir).stdout
        client = boto3.client("s3", endpoint_url=console.endpoint, region_name="us-east-1",
                              aws_access_key_id=access, aws_secret_access_key=secret,
                              config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
        client.create_bucket(Bucket="made-by-console-user")
        shot("users")

        # traffic charts fill from the metrics; services list the background counters
        browser.find_element(By.CSS_SELECTOR, "a[data-view=traffic]").click()
        start = browser.execute_script("return samples.length")
        for i in range(2000):  # traffic across four samples (2 s apart), bounded
            s3.put_object(Bucket="console", Key=f"traffic/{i % 50}", Body=b"t" * 20_000)
            if i % 20 == 0 and browser.execute_script("return samples.length") >= start + 4:
                break
        _wait(lambda: browser.execute_script("return samples.length") >= start + 4, what="four traffic samples")
        shot("traffic")
        browser.find_element(By.CSS_SELECTOR, "a[data-view=services]").click()
        _wait(lambda: "exastor_reducer_passes_total" in el("services").text, what="the services")
        shot("services")
    finally:
        browser.quit()
    assert len(list((tmp_path / "shots").glob("*.png"))) == 7


def test_login_session_and_csrf_rules(console):
    api = console.admin_url + "/api"
    assert requests.get(api + "/overview", timeout=30).status_code == 401
    assert requests.post(api + "/login", json={"access_key": console.access_key, "secret_key": "x"},
                         timeout=30).status_code == 401
    session = requests.Session()
    login = session.post(api + "/login", json={"access_key": console.access_key,
                                               "secret_key": console.secret_key}, timeout=30)
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    csrf = login.json()["csrf"]
    assert session.get(api + "/overview", timeout=30).status_code == 200
    # a state change without the CSRF header, with a wrong one, or from another origin: refused
    assert session.post(api + "/users", json={"name": "csrf-victim"}, timeout=30).status_code == 403
    assert session.post(api + "/users", json={"name": "csrf-victim"}, headers={"X-Exastor-CSRF": "0" * 32},
                        timeout=30).status_code == 403
    assert session.post(api + "/users", json={"name": "csrf-victim"},
                        headers={"X-Exastor-CSRF": csrf, "Origin": "http://evil.example"},
                        timeout=30).status_code == 403
    assert "csrf-victim" not in exastor("user", "list", data_dir=console.data_dir).stdout
    made = session.post(api + "/users", json={"name": "csrf-ok"}, headers={"X-Exastor-CSRF": csrf}, timeout=30)
    assert made.status_code == 201 and made.json()["secret_key"]
    # a forged or tampered cookie is no session
    token = session.cookies.get("exastor_session")
    expiry, nonce, sig = token.split(".")
    forged = f"{int(expiry) + 1000}.{nonce}.{sig}"
    assert requests.get(api + "/overview", cookies={"exastor_session": forged}, timeout=30).status_code == 401
    page = requests.get(console.admin_url + "/", timeout=30)
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "<script src=\"/console.js\"" in page.text and "http" not in page.text.split("<body>")[0].replace(
        'http-equiv', '')
