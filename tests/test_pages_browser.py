"""The pages in a real browser: Debian's headless Chromium, driven by Selenium.

- every outcome (each deny reason, each way in, a refused valid code, a paper code) turns the visitor
  display to its colour with its words, in English and in Chinese, and the idle screen comes back;
- a camera fault shows on the idle screen and goes with the camera's recovery;
- the staff view starts from the sentry's state and follows its stream;
- the real daemon's decisions (codes shown to its synthetic camera, the staff button on mock pins)
  reach both pages;
- the camera aiming page shows the synthetic camera's live picture with a box around its code, and
  never the code's text.

Each state is saved as a screenshot (`display-{language}-{state}.png`, `staff-en.png`, `aim.png`) in
the folder `EDGE_SENTRY_SCREENS` names, else in the test's temporary folder. Without Chromium or chromedriver
every test here is skipped, and the reason names the Debian package to install.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import chromium
import pytest
from codes_helpers import ISSUER, trust_doc
from pages_helpers import EventStream, page_config, page_server, running_daemon

from edge_sentry.codes import es1, keys
from edge_sentry.pages import texts
from edge_sentry.pages.hub import RECENT, PageHub
from edge_sentry.pages.server import PageServer
from edge_sentry.pages.views import MAX_STREAMS
from edge_sentry.vocabulary import Event, Mode, Reason, Refusal, Verdict

_why = chromium.missing()
pytestmark = pytest.mark.skipif(_why is not None, reason=_why or "")

GREEN, RED, AMBER, BLACK = "rgb(0, 102, 43)", "rgb(163, 0, 27)", "rgb(255, 179, 0)", "rgb(0, 0, 0)"


def outcomes() -> list[tuple[str, dict[str, Any], str, str]]:
    """(screenshot name, scan event fields, display state, background) for every outcome."""
    out = [(f"accept-{mode}", {"verdict": Verdict.ACCEPT, "reason": Reason.OK, "mode": mode}, "accept", GREEN)
           for mode in Mode]  # fmt: skip
    for reason in Reason:
        if reason == Reason.OK:
            continue
        state, colour = ("assist", AMBER) if reason == Reason.ASSIST else ("deny", RED)
        out.append((reason, {"verdict": Verdict.DENY, "reason": reason, "mode": Mode.SCAN}, state, colour))
    refused = {"verdict": Verdict.DENY, "reason": Reason.OK, "mode": Mode.SCAN,
               "refused": Refusal.TRUST_STALE}  # fmt: skip
    out.append(("refused", refused, "deny", RED))
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[chromium.Browser]:
    instance = chromium.Browser()
    try:
        yield instance
    finally:
        instance.quit()


@pytest.fixture(scope="module")
def screens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return chromium.screens_folder(tmp_path_factory.mktemp("screens"))


def scan(**fields: Any) -> dict[str, Any]:
    """A scan event as the sentry records it, with the fields a page must not show besides."""
    return {"event": Event.SCAN, "t": int(time.time() * 1000), "subject": "sealed", "issuer": "Arena Tickets",
            "scheme": "es1", "id": "0190d2c6-0000-7000-8000-000000000001", **fields}  # fmt: skip


_DISPLAY = (
    "const b = document.body; return {state: b.dataset.state, reason: b.dataset.reason || null, "
    "fault: b.dataset.fault || null, count: window.sentryShown.length, "
    "background: getComputedStyle(b).backgroundColor, "
    "headline: document.getElementById('headline').innerText, "
    "message: document.getElementById('message').innerText, "
    "idle: document.getElementById('idle-title').innerText, "
    "venue: document.getElementById('venue').innerText}"
)
_STAFF = (
    "const rows = Array.from(document.querySelectorAll('#recent tbody tr'));"
    "const counts = {}; document.querySelectorAll('[data-count]').forEach("
    "  td => counts[td.dataset.count] = Number(td.innerText));"
    "return {rows: rows.map(r => Array.from(r.cells).slice(1).map(c => c.innerText)), counts: counts,"
    "  alarms: Array.from(document.querySelectorAll('#alarms li:not(.none)')).map(li => li.innerText),"
    "  open: Array.from(document.querySelectorAll('#open li:not(.none)')).map(li => li.innerText),"
    "  health: document.getElementById('health').innerText,"
    "  link: document.getElementById('link').dataset.up}"
)


def settle(browser: chromium.Browser, script: str, check: Any, what: str) -> dict[str, Any]:
    """What `script` reads from the page once `check` accepts it (the browser polls; a guard of 20 s)."""
    last: dict[str, Any] = {}

    def ready(_driver: Any) -> bool:
        last.clear()
        last.update(browser.js(script))
        return bool(check(last))

    browser.wait(ready, message=f"the page never showed {what}; last {last}")
    return last


def wait_for(browser: chromium.Browser, **want: Any) -> dict[str, Any]:
    """The visitor display once it has every value in `want` (the background settled too)."""
    return settle(browser, _DISPLAY, lambda page: all(page.get(k) == v for k, v in want.items()), str(want))


def wait_staff(browser: chromium.Browser, check: Any, what: str) -> dict[str, Any]:
    return settle(browser, _STAFF, check, what)


@pytest.fixture
def display(browser: chromium.Browser, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PageHub]:
    language = getattr(request, "param", "en")
    config = page_config(tmp_path, display={"language": language, "result_s": 3})
    with page_server(config) as (server, hub):
        browser.driver.get(server.url + "/")
        wait_for(browser, state="idle", venue="Harbour Arena")
        browser.wait(lambda _d: hub.streams == 1, message="the display never opened its stream")
        yield hub


def test_a_display_refused_for_too_many_streams_connects_once_one_is_free(browser, tmp_path):
    """A refused EventSource (503) ends for good in a browser: the page opens a new one later."""
    with page_server(page_config(tmp_path)) as (server, hub):
        assert server.address is not None
        others = [EventStream(*server.address) for _ in range(MAX_STREAMS)]
        try:
            browser.driver.get(server.url + "/")
            wait_for(browser, state="idle", venue="Harbour Arena")
            browser.wait(lambda _d: browser.js("return performance.getEntriesByType('resource')"
                                                ".some(r => r.name.includes('/events'))"),
                         message="the display never asked for its stream")  # fmt: skip
            others.pop().close()
            browser.wait(lambda _d: hub.streams < MAX_STREAMS, message="a stream never closed")
            browser.wait(lambda _d: hub.streams == MAX_STREAMS, message="the display never tried again")
            hub.publish(scan(verdict=Verdict.DENY, reason=Reason.STALE, mode=Mode.SCAN))
            wait_for(browser, state="deny", reason="stale")
        finally:
            for stream in others:
                stream.close()


def test_the_display_keeps_only_the_last_twenty_results(browser, display):
    """As the staff view does (README, "Privacy"): older results are not kept in the page."""
    for _ in range(RECENT + 4):
        display.publish(scan(verdict=Verdict.DENY, reason=Reason.EXPIRED, mode=Mode.SCAN))
    display.publish(scan(verdict=Verdict.DENY, reason=Reason.STALE, mode=Mode.SCAN))
    wait_for(browser, reason="stale", count=RECENT)


@pytest.mark.parametrize("display", ["en", "zh"], indirect=True)
def test_every_outcome_shows_its_colour_and_words_then_the_idle_screen(browser, display, screens):
    language = browser.js("return document.documentElement.lang")
    page = wait_for(browser, state="idle", background=BLACK)
    assert page["idle"] == texts.UI["idle_title"][language]
    browser.driver.save_screenshot(str(screens / f"display-{language}-idle.png"))
    for name, fields, state, colour in outcomes():
        count = page["count"] + 1
        display.publish(scan(**fields))
        page = wait_for(browser, count=count, state=state, background=colour)
        expected = texts.message(fields["verdict"], fields["reason"], fields["mode"], fields.get("refused"))
        assert page["message"] == expected[language], name
        assert page["headline"] == texts.UI[state][language], name
        browser.driver.save_screenshot(str(screens / f"display-{language}-{name}.png"))
    assert "sealed" not in browser.driver.page_source and "Arena Tickets" not in browser.driver.page_source
    wait_for(browser, state="idle", background=BLACK)  # display.result_s after the last one


def test_a_paper_code_waits_for_staff_until_they_let_the_visitor_in(browser, display):
    display.publish(scan(verdict=Verdict.DENY, reason=Reason.ASSIST, mode=Mode.SCAN))
    wait_for(browser, state="assist", background=AMBER)
    display.publish(scan(verdict=Verdict.ACCEPT, reason=Reason.OK, mode=Mode.ASSISTED))
    page = wait_for(browser, state="accept", background=GREEN)
    assert page["message"] == texts.MODE_MESSAGES[Mode.ASSISTED]["en"]


def test_a_paper_code_nobody_confirmed_returns_to_the_idle_screen(browser, display):
    display.publish(scan(verdict=Verdict.DENY, reason=Reason.ASSIST, mode=Mode.SCAN))
    wait_for(browser, state="assist")
    display.publish({"event": Event.ASSIST_EXPIRED, "t": int(time.time() * 1000)})
    wait_for(browser, state="idle")


@pytest.mark.parametrize("display", ["en", "zh"], indirect=True)
def test_a_camera_fault_shows_on_the_idle_screen_until_the_camera_is_back(browser, display, screens):
    language = browser.js("return document.documentElement.lang")
    display.publish({"event": Event.CAMERA_FAULT, "t": int(time.time() * 1000), "cause": "gone"})
    wait_for(browser, state="idle", fault="1")
    text = browser.js("return document.getElementById('fault').innerText")
    assert text == texts.UI["fault"][language]
    browser.driver.save_screenshot(str(screens / f"display-{language}-fault.png"))
    display.publish({"event": Event.CAMERA_RECOVERED, "t": int(time.time() * 1000)})
    wait_for(browser, state="idle", fault=None)


def test_the_staff_view_starts_from_the_state_and_follows_the_stream(browser, tmp_path, screens):
    config = page_config(tmp_path)
    with page_server(config) as (server, hub):
        hub.publish(scan(verdict=Verdict.ACCEPT, reason=Reason.OK, mode=Mode.SCAN))
        hub.publish(scan(verdict=Verdict.DENY, reason=Reason.EXPIRED, mode=Mode.SCAN))
        browser.driver.set_window_size(1280, 1000)
        try:
            browser.driver.get(server.url + "/staff")
            wait_staff(browser, lambda v: len(v["rows"]) == 2 and v["link"] == "1", "the earlier decisions")
            hub.publish(scan(verdict=Verdict.DENY, reason=Reason.STALE, mode=Mode.SCAN))
            hub.publish(scan(verdict=Verdict.ACCEPT, reason=Reason.OK, mode=Mode.MANUAL))
            hub.publish({"event": Event.DOOR_HELD, "t": int(time.time() * 1000), "open_s": 21.0})
            hub.publish_health({"t": int(time.time() * 1000), "gate": "alarm", "fps": 15.0,
                                "latency_ms": {"p50": 1.1, "p99": 1.9}})  # fmt: skip
            view = wait_staff(browser, lambda v: len(v["rows"]) == 4 and v["alarms"] and "15" in v["health"],
                              "the new decisions, the alarm and the health report")  # fmt: skip
            assert view["rows"][:2] == [["accept", "ok", "manual"], ["deny", "stale", "scan"]]
            assert view["counts"] == {"decisions": 4, "accept": 2, "deny": 2, "manual": 1, "assisted": 0,
                                      "exit": 0}  # fmt: skip
            assert "door-held" in view["alarms"][0] and "door-held" in view["open"][0]
            assert "frame to relay" in view["health"]
            browser.driver.save_screenshot(str(screens / "staff-en.png"))
            hub.publish({"event": Event.DOOR_CLOSED, "t": int(time.time() * 1000), "open_s": 30.0})
            wait_staff(browser, lambda v: v["open"] == [], "the held door closed")
            browser.driver.refresh()  # a page opened later starts from the same state
            view = wait_staff(browser, lambda v: len(v["rows"]) == 4, "the state after a reload")
            assert view["counts"]["decisions"] == 4 and "door-held" in view["alarms"][0]
        finally:
            browser.driver.set_window_size(*chromium.DISPLAY_SIZE)
    assert "sealed" not in browser.driver.page_source


def _scene(path: Path, texts_: list[str]) -> Path:
    cues = [{"text": t, "start": 0.5 + i * 1.5, "end": 0.5 + i * 1.5 + 0.8} for i, t in enumerate(texts_)]
    path.write_text(json.dumps({"duration": cues[-1]["end"] + 600, "cues": cues}))
    return path


def test_the_real_daemons_decisions_reach_the_display_and_the_staff_view(browser, tmp_path):
    """Codes shown to the synthetic camera and the staff button on mock pins, through the daemon."""
    key, stranger = keys.generate(), keys.generate()
    now = int(datetime.now(UTC).timestamp())
    good = es1.issue(key, issuer=ISSUER, lifetime_s=3600)
    codes = [
        good,
        es1.issue(key, issuer=ISSUER, lifetime_s=60, iat=now - 4000),  # expired
        es1.issue(key, issuer=ISSUER, lifetime_s=3600, iat=now - 300),  # a screenshot: stale
        good,  # passback
        es1.issue(stranger, issuer=ISSUER, lifetime_s=3600),  # unknown-key
        es1.issue(key, issuer=ISSUER, lifetime_s=3600, paper=True),  # assist
    ]
    (tmp_path / "trust.json").write_text(json.dumps(trust_doc(key)))
    config = page_config(
        tmp_path,
        trust={"file": str(tmp_path / "trust.json")},
        camera={"scene": str(_scene(tmp_path / "scene.json", codes)), "fps": 15},
        display={"result_s": 1},
    )
    with running_daemon(config, log=io.StringIO()) as daemon:
        assert isinstance(daemon.pages, PageServer)
        browser.driver.get(daemon.pages.url + "/")
        wait_for(browser, venue="Harbour Arena")
        # The page may open after the first code was decided: what it shows is checked from there on.
        page = wait_for(browser, state="assist", background=AMBER)
        staff = daemon.pins.pin(config.gpio.staff)
        staff.drive_low()
        time.sleep(0.15)  # a person's press, not a measurement
        staff.drive_high()
        wait_for(browser, state="accept", reason="ok")
        log = browser.js("return window.sentryShown.map(s => [s.state, s.reason, s.mode])")
        assert log[-2:] == [["assist", "assist", "scan"], ["accept", "ok", "assisted"]]
        expected = [["accept", "ok", "scan"], ["deny", "expired", "scan"], ["deny", "stale", "scan"],
                    ["deny", "passback", "scan"], ["deny", "unknown-key", "scan"]]  # fmt: skip
        assert log[:-2] == expected[len(expected) - len(log[:-2]) :]
        assert page["message"] == texts.REASON_MESSAGES[Reason.ASSIST]["en"]
        staff.drive_low()  # nothing waits for staff now: the same button is a manual entry
        time.sleep(0.15)
        staff.drive_high()
        browser.driver.get(daemon.pages.url + "/staff")
        view = wait_staff(browser, lambda v: len(v["rows"]) == 8, "all eight decisions")
    assert [row[1:] for row in view["rows"]][::-1] == [
        ["ok", "scan"], ["expired", "scan"], ["stale", "scan"], ["passback", "scan"], ["unknown-key", "scan"],
        ["assist", "scan"], ["ok", "assisted"], ["ok", "manual"]]  # fmt: skip
    assert view["counts"]["assisted"] == 1 and view["counts"]["manual"] == 1


_AIM = (
    "const a = window.sentryAim; const c = document.getElementById('view');"
    "const ctx = c.getContext('2d'); const hits = a.boxes.length ? a.boxes[0].map(function (p) {"
    "  const d = ctx.getImageData(Math.round(p[0]) - 3, Math.round(p[1]) - 3, 7, 7).data; let n = 0;"
    "  for (let i = 0; i < d.length; i += 4) if (d[i] < 80 && d[i + 1] > 200 && d[i + 2] < 160) n++;"
    "  return n; }) : [];"
    "const d = ctx.getImageData(0, 0, c.width, c.height).data; let sum = 0;"
    "for (let i = 0; i < d.length; i += 4) sum = (sum * 31 + d[i]) % 1000000007;"
    "return {frames: a.frames, codes: a.codes, boxes: a.boxes, hits: hits, width: c.width, height: c.height,"
    "  signature: sum, code: document.getElementById('code').innerText,"
    "  fps: document.getElementById('fps').innerText,"
    "  exposure: document.getElementById('exposure').innerText,"
    "  sharpness: document.getElementById('sharpness').innerText, live: document.body.dataset.live}"
)


def test_the_aiming_page_shows_a_changing_picture_with_the_synthetic_cameras_code_boxed(
    browser, tmp_path, screens
):
    key = keys.generate()
    text = es1.issue(key, issuer=ISSUER, lifetime_s=3600)
    (tmp_path / "trust.json").write_text(json.dumps(trust_doc(key)))
    # A hand that sways: the phone moves a little every second, as one held up to a camera does.
    cues = [{"text": text, "start": i, "end": i + 1, "size": 0.45, "rotation": 8, "x": 0.47 + 0.06 * (i % 2)}
            for i in range(600)]  # fmt: skip
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps({"duration": 600, "cues": cues}))
    config = page_config(tmp_path, trust={"file": str(tmp_path / "trust.json")},
                         camera={"scene": str(scene), "fps": 15}, display={"aim": True})  # fmt: skip
    browser.driver.set_window_size(1100, 560)
    try:
        with running_daemon(config) as daemon:
            assert isinstance(daemon.pages, PageServer) and daemon.viewfinder is not None
            browser.driver.get(daemon.pages.url + "/aim")
            first = settle(browser, _AIM, lambda v: v["codes"] == 1 and v["fps"] != "–", "a boxed code")
            later = settle(browser, _AIM, lambda v: v["frames"] >= first["frames"] + 6, "newer pictures")
            assert later["signature"] != first["signature"]  # a live picture
            for view in (first, later):
                # The box's colour is on the canvas at each of the code's four corners ...
                assert len(view["hits"]) == 4 and all(n > 0 for n in view["hits"]), view["hits"]
                # ... and the box is around the code the scene shows in the middle of the picture.
                xs = [p[0] for p in view["boxes"][0]]
                ys = [p[1] for p in view["boxes"][0]]
                assert (view["width"], view["height"]) == (640, 360)
                # (Its phone sways 0.03 of the width either side of the centre, turned 8 degrees.)
                assert abs(sum(xs) / 4 - 320) < 45 and abs(sum(ys) / 4 - 180) < 60
                assert 0.25 * 360 < max(ys) - min(ys) < 0.55 * 360
            assert later["live"] == "1" and "code in view" in later["code"]
            assert float(later["fps"]) > 1 and later["exposure"].split()[0] in ("dark", "good", "bright")
            browser.driver.save_screenshot(str(screens / "aim.png"))
            page_text = browser.js("return document.documentElement.outerHTML + document.body.innerText")
            assert text not in page_text and text not in browser.driver.page_source
            assert text.split(":", 1)[1][:24] not in page_text
            browser.driver.get("about:blank")  # the page closed: the hand-off stops
            viewfinder = daemon.viewfinder
            browser.wait(lambda _d: not viewfinder.watched, message="the closed page still watched")
    finally:
        browser.driver.set_window_size(*chromium.DISPLAY_SIZE)
