"""The web page at `/`: how it is served (over HTTP), and what a person does
with it in a real browser: Debian's chromium driven by playwright, against
the daemon as a real process on free ports.

Browser tests skip, saying why, on a machine without chromium or playwright;
with CI set they fail instead (CI must run them). Screenshots go to each
test's tmp_path."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.record import format_timestamp
from collector.routes import App, Request, route, web_files
from tests.faults_support import DaemonProcess, poll
from tests.test_http import make_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]

# --- how the page is served -------------------------------------------------------------


def _app(token: str | None = None) -> App:
    return make_app(auth_token=token)


def _get(app: App, path: str, method: str = "GET", **headers: str) -> Any:
    return route(Request(method, path, {}, {k.lower(): v for k, v in headers.items()}), app)


def test_the_page_is_html_under_a_strict_csp_and_is_never_cached() -> None:
    resp = _get(_app(), "/")
    assert resp.status == 200
    assert resp.content_type.startswith("text/html")
    hdrs = dict(resp.headers)
    csp = hdrs["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "connect-src 'self'" in csp
    assert hdrs["Cache-Control"] == "no-cache"
    assert b'data-testid="search"' in resp.body


def test_assets_are_cached_for_a_year_under_a_url_that_changes_with_them() -> None:
    app = _app()
    page = _get(app, "/").body.decode()
    version, files = web_files()
    urls = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page)
    assert sorted(urls) == [f"/assets/{version}/app.js", f"/assets/{version}/style.css"]
    for url in urls:
        resp = _get(app, url)
        assert resp.status == 200
        assert resp.body == files[url.rsplit("/", 1)[1]][0]
        assert dict(resp.headers)["Cache-Control"] == "public, max-age=31536000, immutable"
    js = _get(app, f"/assets/{version}/app.js")
    assert js.content_type.startswith("text/javascript")
    # A page from before an upgrade asks for the old version: today's file, not cached.
    old = _get(app, "/assets/000000000000/app.js")
    assert old.status == 200
    assert dict(old.headers)["Cache-Control"] == "no-cache"


def test_unknown_assets_are_404_and_only_get_and_head_are_allowed() -> None:
    app = _app()
    version, _ = web_files()
    assert _get(app, f"/assets/{version}/nope.js").status == 404
    assert _get(app, f"/assets/{version}/index.html").status == 404
    assert _get(app, "/assets/../http.py").status == 404
    assert _get(app, f"/assets/{version}/../../http.py").status == 404
    post = _get(app, "/", "POST")
    assert post.status == 405
    assert ("Allow", "GET, HEAD") in post.headers
    assert _get(app, "/", "HEAD").status == 200


def test_the_page_needs_no_token_but_the_api_behind_it_does() -> None:
    app = _app(token="s3cret")
    assert _get(app, "/").status == 200
    version, _ = web_files()
    assert _get(app, f"/assets/{version}/app.js").status == 200
    assert _get(app, "/logs").status == 401
    assert _get(app, "/logs", authorization="Bearer s3cret").status == 200


def test_the_page_loads_nothing_from_another_host() -> None:
    _, files = web_files()
    for name, (body, _) in files.items():
        text = body.decode()
        # Only the SVG namespace name may look like a URL; it is never fetched.
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (name, urls)


# --- the browser side: support -----------------------------------------------------------


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A browser tab on the daemon, collecting what went wrong in it."""

    def __init__(self, browser: Any, base: str, shots: Path, **ctx: Any) -> None:
        self.base = base
        self.shots = shots
        ctx.setdefault("viewport", {"width": 1400, "height": 900})
        self.context = browser.new_context(**ctx)
        self.tab = self.context.new_page()
        self.tab.set_default_timeout(10_000)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.tab.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.tab.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.tab.on("request", lambda r: self.requests.append(r.url))
        # A daemon without the search language refuses `query=` once (400);
        # the page then searches the message text instead.
        self.expected = ""

    def open(self, target: str = "/") -> None:
        self.tab.goto(self.base + target)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.tab.screenshot(path=str(path))
        return path

    def rows(self) -> list[str]:
        """The ids of the rows in the DOM, top to bottom as they are seen."""
        return [
            str(x)
            for x in self.tab.eval_on_selector_all(
                "[data-testid=row]",
                "els => els.map(e => [e.getBoundingClientRect().top, e.dataset.id])"
                ".sort((a, b) => a[0] - b[0]).map(p => p[1])",
            )
        ]

    def shown_rows(self) -> list[str]:
        """rows(), once the list shows any: a width change (the detail pane
        opening, a toggle) remounts the rows, and until the next animation
        frame draws them again the DOM holds none. Read in the same turn as
        the check, so the answer is never that gap."""
        handle = self.tab.wait_for_function(
            "() => { const r = [...document.querySelectorAll('[data-testid=row]')];"
            " return r.length ? r.map(e => [e.getBoundingClientRect().top, e.dataset.id])"
            ".sort((a, b) => a[0] - b[0]).map(p => p[1]) : null; }"
        )
        return [str(x) for x in handle.json_value()]

    def total(self) -> int:
        return int(self.tab.get_attribute("[data-testid=histogram]", "data-total") or -1)

    def held(self) -> int:
        """Records the list holds (most are not in the DOM: it is windowed)."""
        return int(self.tab.get_attribute("#list", "data-rows") or -1)

    def wait_loads(self, n: int) -> None:
        """Until the page finished its n-th search (first rows shown)."""
        self.tab.wait_for_function(
            "n => Number(document.getElementById('list').dataset.loads || 0) >= n", arg=n
        )

    def loads(self) -> int:
        return int(self.tab.get_attribute("#list", "data-loads") or 0)

    def wait_total(self, n: int) -> None:
        self.tab.wait_for_function(
            "n => document.querySelector('[data-testid=histogram]').dataset.total === String(n)",
            arg=n,
        )

    def search(self, text: str) -> None:
        before = self.loads()
        self.tab.fill("[data-testid=search]", text)
        self.tab.press("[data-testid=search]", "Enter")
        self.wait_loads(before + 1)

    def close(self) -> None:
        self.context.close()

    def assert_clean(self, allow: str = "") -> None:
        allow = "|".join(x for x in (allow, self.expected) if x)
        bad = [e for e in self.errors if not (allow and re.search(allow, e))]
        assert not bad, bad
        foreign = [
            u for u in self.requests if not u.startswith(self.base) and not u.startswith("data:")
        ]
        assert not foreign, foreign


class WebDaemon(DaemonProcess):
    """The daemon process, optionally with an auth token, fed over POST /logs."""

    def __init__(self, workdir: Path, token: str | None = None) -> None:
        super().__init__(workdir, http={"auth_token": token} if token else None)
        self.token = token

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def call(self, method: str, target: str, body: bytes | None = None, **hdr: str) -> Any:
        headers = dict(hdr)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + target, body, headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def get(self, target: str) -> Any:
        return self.call("GET", target)

    def post(self, records: list[dict[str, Any]]) -> list[str]:
        body = "\n".join(json.dumps(r) for r in records).encode()
        ans = self.call("POST", "/logs", body, **{"Content-Type": "application/x-ndjson"})
        return list(ans["ids"])

    def supports(self, target: str) -> bool:
        """Whether the daemon has the API a test needs (not a 404/unknown-parameter 400)."""
        try:
            self.get(target)
        except urllib.error.HTTPError as e:
            return e.code not in (400, 404)
        return True


HOSTS = ("web-1", "web-2", "db-1")
SERVICES = ("nginx", "sshd", "cron")
LEVELS = ("info", "info", "warning", "err", "debug", "notice")
MESSAGES = (
    "GET /api/users/{i} 200",
    "request timeout after 5s from 10.0.0.{i}",
    "disk full on /var/lib/db{i}",
    "user {i} logged in",
    "cache miss for key session{i}",
    "worker {i} crashed\nTraceback (most recent call last):\n  File app.py\nValueError: bad",
)
SEED = 400
SPAN_S = 50 * 60  # seed records spread over the last 50 minutes


def seed_records(now: float) -> list[dict[str, Any]]:
    out = []
    for i in range(SEED):
        ts = int((now - SPAN_S + i * SPAN_S / SEED) * 1_000_000)
        out.append(
            {
                "timestamp": format_timestamp(ts),
                "host": HOSTS[i % 3],
                "service": SERVICES[(i // 3) % 3],
                "level": LEVELS[i % 6],
                "message": MESSAGES[(i // 2) % 6].format(i=i),
                "user_id": i % 7,
            }
        )
    return out


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[WebDaemon, list[dict[str, Any]]]]:
    if _browser_missing() and not os.environ.get("CI"):
        pytest.skip(str(_browser_missing()))
    d = WebDaemon(tmp_path_factory.mktemp("webd"))
    d.start()
    try:
        recs = seed_records(time.time())
        ids = d.post(recs)
        for rec, rid in zip(recs, ids, strict=True):
            rec["id"] = rid
        yield d, recs
    finally:
        d.kill()


@pytest.fixture
def page(browser: Any, seeded: tuple[WebDaemon, Any], tmp_path: Path) -> Iterator[Page]:
    p = Page(browser, seeded[0].base, tmp_path)
    if not seeded[0].supports("/logs?query=x"):
        p.expected = "status of 400"
    try:
        yield p
    finally:
        p.close()


def _us(ts: str) -> int:
    from collector.query import parse_time

    return parse_time("t", ts)


# --- the browser side: what a person does --------------------------------------------------


def test_the_page_shows_the_newest_records_first_and_a_histogram_of_every_match(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    _, recs = seeded
    page.open()
    page.wait_loads(1)
    page.wait_total(SEED)
    rows = page.rows()
    newest_first = [r["id"] for r in reversed(recs)]
    assert rows[0] == newest_first[0]
    assert rows == newest_first[: len(rows)]
    # Windowed: every record is held, only those near the screen are in the DOM.
    assert page.held() == SEED
    assert 20 <= len(rows) < 100
    svg_bars = page.tab.locator("[data-testid=histogram] rect").count()
    assert svg_bars > 10
    page.tab.wait_for_function(
        "() => document.querySelector('[data-testid=health]').textContent.includes('records')"
    )
    assert "records 400" in page.tab.inner_text("[data-testid=health]")
    page.shot("first-load")
    page.assert_clean()


def test_scrolling_far_down_loads_older_pages_and_keeps_the_dom_small(
    browser: Any, fresh: WebDaemon, tmp_path: Path
) -> None:
    now = time.time()
    recs = [
        {"timestamp": format_timestamp(int((now - 1800 + i) * 1_000_000)), "message": f"line {i}"}
        for i in range(1200)
    ]
    ids = fresh.post(recs)
    page = Page(browser, fresh.base, tmp_path)
    try:
        page.open("/?start=-40m")
        page.wait_loads(1)
        assert page.held() == 500  # one page; older ones come as the reader scrolls
        oldest = f"[data-testid=row][data-id='{ids[0]}']"
        for _ in range(10):
            held = page.held()
            page.tab.eval_on_selector("#list", "l => { l.scrollTop = l.scrollHeight; }")
            # Until the next page came, or the oldest record is on screen.
            page.tab.wait_for_function(
                "([n, sel]) => Number(document.getElementById('list').dataset.rows) > n"
                " || document.querySelector(sel)",
                arg=[held, oldest],
            )
            if page.tab.locator(oldest).count():
                break
        assert page.held() == 1200
        assert len(page.rows()) < 100
        page.assert_clean()
    finally:
        page.close()


def test_a_search_narrows_the_rows_and_the_histogram_and_highlights_the_word(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    _, recs = seeded
    page.open()
    page.wait_loads(1)
    page.search("timeout")
    want = [r["id"] for r in reversed(recs) if "timeout" in r["message"]]
    page.wait_total(len(want))
    assert page.rows() == want[: len(page.rows())]
    marks = page.tab.eval_on_selector_all(
        "[data-testid=row] mark", "ms => ms.map(m => m.textContent)"
    )
    assert marks
    assert set(marks) == {"timeout"}
    assert "query=timeout" in page.tab.url
    page.shot("search")
    page.assert_clean()


def test_typing_a_range_limits_the_rows_and_the_count_to_it(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    _, recs = seeded
    page.open()
    page.wait_loads(1)
    lo, hi = recs[100]["timestamp"], recs[199]["timestamp"]
    page.tab.fill("[data-testid=range-start]", lo)
    page.tab.fill("[data-testid=range-end]", hi)
    page.tab.press("[data-testid=range-end]", "Enter")
    page.wait_total(100)
    rows = page.rows()
    assert rows[0] == recs[199]["id"]
    assert set(rows) <= {r["id"] for r in recs[100:200]}
    assert f"end={hi.replace(':', '%3A')}" in page.tab.url
    page.assert_clean()


def test_dragging_across_the_histogram_narrows_the_range_to_what_was_dragged_over(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    _, recs = seeded
    page.open()
    page.wait_loads(1)
    page.wait_total(SEED)
    box = page.tab.locator("[data-testid=histogram]").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    before = page.loads()
    page.tab.mouse.move(box["x"] + box["width"] * 0.45, y)
    page.tab.mouse.down()
    page.tab.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.tab.mouse.up()
    page.wait_loads(before + 1)
    start = page.tab.input_value("[data-testid=range-start]")
    end = page.tab.input_value("[data-testid=range-end]")
    lo, hi = _us(start), _us(end)
    want = [r for r in recs if lo <= _us(r["timestamp"]) <= hi]
    assert 0 < len(want) < SEED
    page.wait_total(len(want))
    assert page.tab.get_attribute("[data-testid=live]", "aria-pressed") == "false"
    page.assert_clean()


def test_clicking_a_facet_includes_its_value_and_a_second_click_removes_it(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    _, recs = seeded
    page.open()
    page.wait_loads(1)
    facet = page.tab.locator("[data-testid=facet][data-field=host][data-value='db-1']")
    want = [r["id"] for r in reversed(recs) if r["host"] == "db-1"]
    assert facet.get_attribute("data-count") == str(len(want))
    facet.click()
    page.wait_total(len(want))
    assert page.rows() == want[: len(page.rows())]
    assert "f=host%3Adb-1" in page.tab.url
    # Facet counts follow the filter.
    page.tab.wait_for_selector(
        "[data-testid=facet][data-field=host]:not([data-value='db-1'])", state="detached"
    )
    page.tab.locator("[data-testid=facet][data-field=host][data-value='db-1']").click()
    page.wait_total(SEED)
    page.assert_clean()


def test_the_exclude_control_of_a_facet_leaves_its_value_out(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    d, recs = seeded
    if not d.supports("/logs?query=-host:x"):
        pytest.skip("this daemon has no search language (query=) yet: excluding needs -host:value")
    page.open()
    page.wait_loads(1)
    page.tab.hover("[data-testid=facet][data-field=service][data-value=cron]")
    page.tab.click(
        "[data-testid=facet][data-field=service][data-value=cron] [data-testid=facet-exclude]"
    )
    want = [r["id"] for r in reversed(recs) if r["service"] != "cron"]
    page.wait_total(len(want))
    assert page.rows() == want[: len(page.rows())]
    assert "f=-service%3Acron" in page.tab.url
    # Facets come from their own /stats call, after the histogram's: the
    # excluded value's entry goes once they are redrawn (bounded wait).
    page.tab.locator("[data-testid=facet][data-field=service][data-value=cron]").wait_for(
        state="detached"
    )
    page.assert_clean()


def test_the_search_language_combines_field_terms_negation_and_phrases(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    d, recs = seeded
    if not d.supports("/logs?query=host:x"):
        pytest.skip("this daemon has no search language (query=) yet")
    page.open()
    page.wait_loads(1)
    page.search('"request timeout" -service:cron level>=warning')
    sev = {"emerg", "alert", "crit", "err", "warning"}
    want = [
        r["id"]
        for r in reversed(recs)
        if "request timeout" in r["message"] and r["service"] != "cron" and r["level"] in sev
    ]
    assert 10 < len(want) < SEED
    page.wait_total(len(want))
    assert page.rows() == want[: len(page.rows())]
    marks = page.tab.eval_on_selector_all(
        "[data-testid=row] mark", "ms => ms.map(m => m.textContent)"
    )
    assert set(marks) == {"request timeout"}
    page.assert_clean()


def test_opening_a_record_shows_every_field_and_escape_closes_it(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    _, recs = seeded
    rec = recs[-5]
    page.open()
    page.wait_loads(1)
    page.tab.click(f"[data-testid=row][data-id='{rec['id']}']")
    detail = page.tab.locator("[data-testid=detail]")
    detail.wait_for(state="visible")
    text = detail.inner_text()
    for value in (
        rec["host"],
        rec["service"],
        rec["level"],
        rec["id"],
        f"fields.user_id\n{rec['user_id']}",
    ):
        assert str(value) in text, value
    assert rec["message"].split("\n")[0] in text
    assert f"open={rec['id']}" in page.tab.url
    page.shot("detail")
    page.tab.keyboard.press("Escape")
    detail.wait_for(state="hidden")
    assert "open=" not in page.tab.url
    # `/` focuses the search box.
    page.tab.keyboard.press("/")
    assert page.tab.evaluate("document.activeElement.dataset.testid") == "search"
    page.assert_clean()


def test_a_syslog_record_shows_its_structured_data(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    d, _ = seeded
    ts = format_timestamp(int(time.time() * 1_000_000))
    line = f'<11>1 {ts} edge-9 sshd 42 ID47 [origin@32473 ip="10.9.9.9" x="a\\"b"] Failed password for root\n'
    with socket.create_connection(("127.0.0.1", d.tcp_port)) as s:
        s.sendall(line.encode())
    found = poll(lambda: d.get("/logs?host=edge-9")["logs"], 10, "syslog record stored")
    rid = found[0]["id"]
    page.open(f"/?open={rid}")
    detail = page.tab.locator("[data-testid=detail]")
    detail.wait_for(state="visible")
    text = detail.inner_text()
    assert "sd.origin@32473.ip\n10.9.9.9" in text
    assert 'sd.origin@32473.x\na"b' in text
    assert "ID47" in text
    assert "err" in text
    page.assert_clean()


def test_context_shows_the_records_stored_around_the_opened_one(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    d, recs = seeded
    rec = recs[200]
    if not d.supports(f"/logs/{rec['id']}/context"):
        pytest.skip("this daemon has no /logs/{id}/context route yet")
    page.open(f"/?open={rec['id']}")
    page.tab.locator("[data-testid=detail]").wait_for(state="visible")
    page.tab.click("[data-testid=context]")
    page.tab.wait_for_selector(".ctx.anchor")
    same_host = [r for r in recs if r["host"] == rec["host"]]
    i = next(k for k, r in enumerate(same_host) if r["id"] == rec["id"])
    want = [r["id"] for r in same_host[max(0, i - 25) : i + 26]]
    got = page.tab.eval_on_selector_all(".ctx", "ls => ls.map(l => l.dataset.id)")
    assert got == want
    assert page.tab.get_attribute(".ctx.anchor", "data-id") == rec["id"]
    page.shot("context")
    page.assert_clean()


def test_reloading_a_shared_url_shows_the_same_view(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    _, recs = seeded
    page.open()
    page.wait_loads(1)
    page.search("logged")
    page.tab.locator("[data-testid=facet][data-field=host][data-value='web-2']").click()
    page.wait_loads(3)
    page.tab.click("#wrap")
    page.tab.click("#tz")
    first = page.shown_rows()[0]  # the toggles re-render the list
    page.tab.click(f"[data-testid=row][data-id='{first}']")
    page.tab.locator("[data-testid=detail]").wait_for(state="visible")
    url = page.tab.url
    total = page.total()
    rows = page.shown_rows()
    assert total == sum(1 for r in recs if "logged" in r["message"] and r["host"] == "web-2")
    # A colleague opens the URL in a fresh browser.
    other = Page(page.tab.context.browser, page.base, page.shots)
    other.expected = page.expected
    try:
        other.tab.goto(url)
        other.wait_loads(1)
        other.wait_total(total)
        assert other.held() == page.held()
        assert other.shown_rows()[:10] == rows[:10]
        assert other.tab.input_value("[data-testid=search]") == "logged"
        assert other.tab.get_attribute("#wrap", "aria-pressed") == "true"
        assert other.tab.inner_text("#tz") == "Local"
        other.tab.locator("[data-testid=detail]").wait_for(state="visible")
        assert first in other.tab.inner_text("[data-testid=detail]")
        assert other.tab.input_value("[data-testid=range-start]") == "-1h"
        other.assert_clean()
    finally:
        other.close()


# --- live mode and auth: each on a daemon of its own --------------------------------------


class CuttableProxy:
    """A TCP proxy in front of the daemon whose connections the test can cut,
    and refuse for a while, as a flaky network or a restarting proxy would."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.lock = threading.Lock()
        self.socks: set[socket.socket] = set()
        self.refusing = False
        self.accepted = 0
        self.fail_stats = 0  # this many /stats requests are cut instead of passed on
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.accepted += 1
                self.socks |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if data.startswith(b"GET /stats") and self.fail_stats > 0:
                    # A response cut after its headers: a browser retries a
                    # request whose connection closed before any answer, not this.
                    self.fail_stats -= 1
                    src.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with self.lock:
                    self.socks.discard(s)
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until `restore`."""
        self.refusing = True
        with self.lock:
            socks, self.socks = list(self.socks), set()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self.refusing = False

    def close(self) -> None:
        self.cut()
        self.server.close()


@pytest.fixture
def fresh(browser: Any, tmp_path: Path) -> Iterator[WebDaemon]:
    d = WebDaemon(tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.kill()


def live_record(word: str, i: int, **kw: Any) -> dict[str, Any]:
    ts = format_timestamp(int(time.time() * 1_000_000))
    return {
        "timestamp": ts,
        "host": "live-1",
        "service": "app",
        "message": f"{word} number {i}",
        **kw,
    }


def test_live_mode_shows_each_new_record_within_two_seconds(
    browser: Any, fresh: WebDaemon, tmp_path: Path
) -> None:
    page = Page(browser, fresh.base, tmp_path)
    try:
        fresh.post([live_record("before", i) for i in range(3)])
        page.open("/")
        page.wait_loads(1)
        page.tab.click("[data-testid=live]")
        page.wait_loads(2)
        assert page.tab.get_attribute("[data-testid=live]", "aria-pressed") == "true"
        assert "live=1" in page.tab.url
        for i in range(5):
            rid = fresh.post([live_record("arrived", i, level="err")])[0]
            t0 = time.monotonic()
            page.tab.wait_for_selector(f"[data-testid=row][data-id='{rid}']", timeout=2000)
            assert time.monotonic() - t0 < 2.0
            assert page.rows()[0] == rid  # newest first, at the top
        assert page.held() == 8
        page.wait_total(8)  # the histogram counts live records once each
        page.shot("live")
        page.assert_clean()
    finally:
        page.close()


def test_live_mode_pauses_while_the_reader_scrolls_away_or_selects_and_then_catches_up(
    browser: Any, fresh: WebDaemon, tmp_path: Path
) -> None:
    page = Page(browser, fresh.base, tmp_path)
    try:
        fresh.post([live_record("older", i) for i in range(200)])
        page.open("/?live=1")
        page.wait_loads(1)
        top = page.rows()[0]
        page.tab.eval_on_selector("#list", "l => { l.scrollTop = 400; }")
        new = fresh.post([live_record("while-away", i) for i in range(3)])
        page.tab.wait_for_selector("#paused:not([hidden])")
        assert "3 new" in page.tab.inner_text("#paused")
        assert page.held() == 200  # nothing inserted above the reader
        page.tab.eval_on_selector("#list", "l => { l.scrollTop = 0; }")
        page.tab.wait_for_selector(f"[data-testid=row][data-id='{new[-1]}']")
        assert page.rows()[:4] == [*reversed(new), top]
        # Selecting text pauses too.
        page.tab.evaluate(
            "() => { const m = document.querySelector('[data-testid=row] .m');"
            " getSelection().selectAllChildren(m); }"
        )
        more = fresh.post([live_record("while-selecting", 0)])
        page.tab.wait_for_selector("#paused:not([hidden])")
        assert more[0] not in page.rows()
        page.tab.evaluate("() => getSelection().removeAllRanges()")
        page.tab.wait_for_selector(f"[data-testid=row][data-id='{more[0]}']")
        assert page.held() == 204
        page.assert_clean()
    finally:
        page.close()


def test_live_mode_resumes_after_a_dropped_connection_with_no_gap_and_no_duplicate(
    browser: Any, fresh: WebDaemon, tmp_path: Path
) -> None:
    proxy = CuttableProxy(fresh.http_port)
    base = f"http://127.0.0.1:{proxy.port}"
    page = Page(browser, base, tmp_path, viewport={"width": 1400, "height": 1600})
    try:
        first = fresh.post([live_record("drop", i) for i in range(10)])
        page.open("/?live=1&query=drop")
        page.wait_loads(1)
        during_live = fresh.post([live_record("drop", 10 + i) for i in range(5)])
        page.tab.wait_for_selector(f"[data-testid=row][data-id='{during_live[-1]}']")
        proxy.cut()
        page.tab.wait_for_function(
            "() => document.getElementById('paused').textContent.includes('reconnecting')"
        )
        while_down = fresh.post([live_record("drop", 15 + i) for i in range(10)])
        proxy.restore()
        for rid in while_down:
            page.tab.wait_for_selector(f"[data-testid=row][data-id='{rid}']", timeout=15_000)
        after = fresh.post([live_record("drop", 25 + i) for i in range(5)])
        page.tab.wait_for_selector(f"[data-testid=row][data-id='{after[-1]}']")
        everything = first + during_live + while_down + after
        rows = page.rows()
        assert sorted(rows) == sorted(everything)  # none missing, none twice
        assert page.held() == len(everything)
        page.wait_total(len(everything))
        assert rows == sorted(rows, reverse=True)  # ids sort by time: newest first
        page.shot("live-resumed")
        page.assert_clean(allow="ERR_|net::|Failed to fetch|status of 400")
    finally:
        page.close()
        proxy.close()


def test_the_histogram_comes_even_when_its_first_requests_break_on_the_network(
    browser: Any, fresh: WebDaemon, tmp_path: Path
) -> None:
    proxy = CuttableProxy(fresh.http_port)
    proxy.fail_stats = 2
    page = Page(browser, f"http://127.0.0.1:{proxy.port}", tmp_path)
    try:
        first = fresh.post([live_record("flaky", i) for i in range(10)])
        page.open("/?live=1&query=flaky")
        page.wait_loads(1)
        later = fresh.post([live_record("flaky", 10 + i) for i in range(5)])
        page.tab.wait_for_selector(f"[data-testid=row][data-id='{later[-1]}']")
        page.wait_total(len(first) + len(later))  # each counted once, none missing
        assert proxy.fail_stats == 0
        page.assert_clean(allow="ERR_|net::|Failed to fetch|status of 400")
    finally:
        page.close()
        proxy.close()


def test_a_collector_with_a_token_asks_for_it_once_and_then_shows_records(
    browser: Any, tmp_path: Path
) -> None:
    d = WebDaemon(tmp_path, token="s3cret-token")
    d.start()
    page = Page(browser, d.base, tmp_path)
    try:
        ids = d.post([live_record("secret", i) for i in range(3)])
        page.open("/")
        token = page.tab.locator("[data-testid=token]")
        token.wait_for(state="visible")
        assert page.rows() == []
        token.fill("wrong")
        token.press("Enter")
        page.tab.wait_for_function(
            "() => document.getElementById('token-error').textContent.includes('refused')"
        )
        token.wait_for(state="visible")
        page.shot("token")
        token.fill("s3cret-token")
        token.press("Enter")
        page.wait_loads(1)
        assert page.rows() == list(reversed(ids))
        assert not token.is_visible()
        page.tab.wait_for_function(
            "() => document.querySelector('[data-testid=health]').textContent.includes('records 3')"
        )
        # Asked once: a reload goes straight to the records.
        page.tab.reload()
        page.wait_loads(1)
        assert page.rows() == list(reversed(ids))
        assert not token.is_visible()
        page.assert_clean(allow="status of 401|status of 400")
    finally:
        page.close()
        d.kill()


def test_download_gives_every_match_as_ndjson_and_copy_gives_the_record_as_json(
    browser: Any, seeded: tuple[WebDaemon, list[dict[str, Any]]], tmp_path: Path
) -> None:
    d, recs = seeded
    page = Page(browser, d.base, tmp_path, permissions=["clipboard-read", "clipboard-write"])
    if not d.supports("/logs?query=x"):
        page.expected = "status of 400"
    try:
        page.open("/?f=host:web-2")
        page.wait_loads(1)
        with page.tab.expect_download() as info:
            page.tab.click("#download")
        path = tmp_path / "dl.ndjson"
        info.value.save_as(path)
        lines = [json.loads(x) for x in path.read_text().splitlines()]
        want = [r["id"] for r in recs if r["host"] == "web-2"]
        assert [x["id"] for x in lines] == want  # oldest first, every match
        assert lines[0]["fields"] == {"user_id": recs[1]["user_id"]}
        rec = next(r for r in reversed(recs) if r["host"] == "web-2")
        page.tab.click(f"[data-testid=row][data-id='{rec['id']}']")
        page.tab.click("#copy-json")
        page.tab.wait_for_selector("#copy-json.copied")
        copied = json.loads(page.tab.evaluate("() => navigator.clipboard.readText()"))
        assert copied == d.get(f"/logs/{rec['id']}")["log"]
        page.assert_clean()
    finally:
        page.close()


def test_times_show_in_utc_or_local_time_and_wrap_shows_every_line(
    browser: Any, seeded: tuple[WebDaemon, list[dict[str, Any]]], tmp_path: Path
) -> None:
    d, recs = seeded
    page = Page(browser, d.base, tmp_path, timezone_id="Asia/Kolkata")  # UTC+05:30
    if not d.supports("/logs?query=x"):
        page.expected = "status of 400"
    try:
        page.open("/")
        page.wait_loads(1)
        newest = recs[-1]
        row = page.tab.locator(f"[data-testid=row][data-id='{newest['id']}']")
        utc = newest["timestamp"]
        assert row.locator(".t").inner_text().replace("\n", "") == f"{utc[:10]} {utc[11:23]}"
        page.tab.click("#tz")
        local = time.gmtime(_us(utc) / 1e6 + 5.5 * 3600)
        assert (
            row.locator(".t")
            .inner_text()
            .replace("\n", "")
            .startswith(time.strftime("%Y-%m-%d %H:%M:%S", local))
        )
        assert "tz=local" in page.tab.url
        multi = next(r for r in reversed(recs) if "\n" in r["message"])
        line = page.tab.locator(f"[data-testid=row][data-id='{multi['id']}']")
        one = line.bounding_box()
        assert one is not None
        assert "+3 lines" in line.inner_text()
        page.tab.click("#wrap")
        page.tab.wait_for_function(
            # clicking re-renders the list: the row may be absent for a frame
            "id => (document.querySelector(`[data-testid=row][data-id='${id}']`)"
            "?.offsetHeight ?? 0) > 60",
            arg=multi["id"],
        )
        assert "Traceback" in line.inner_text()
        page.assert_clean()
    finally:
        page.close()


def test_dark_mode_follows_the_system(
    browser: Any, seeded: tuple[WebDaemon, list[dict[str, Any]]], tmp_path: Path
) -> None:
    d, _ = seeded
    colours = {}
    for scheme in ("light", "dark"):
        page = Page(browser, d.base, tmp_path, color_scheme=scheme)
        try:
            page.open("/")
            page.wait_loads(1)
            colours[scheme] = page.tab.evaluate(
                "() => getComputedStyle(document.body).backgroundColor"
            )
            page.shot(f"scheme-{scheme}")
        finally:
            page.close()
    assert colours["light"] == "rgb(255, 255, 255)"
    assert colours["dark"] == "rgb(17, 20, 24)"


def test_the_health_strip_shows_the_ingest_rate_and_counts_drops(
    browser: Any, fresh: WebDaemon, tmp_path: Path
) -> None:
    page = Page(browser, fresh.base, tmp_path)
    try:
        page.open("/")
        page.wait_loads(1)
        health = page.tab.locator("[data-testid=health]")
        page.tab.wait_for_function(
            "() => document.querySelector('[data-testid=health]').textContent.includes('dropped 0')"
        )
        # An octet-counted frame cut short by the sender closing: dropped and counted.
        with socket.create_connection(("127.0.0.1", fresh.tcp_port)) as s:
            s.sendall(b"<14>1 - h app - - - whole message\n200 <14>1 - h app - - - cut")
        page.tab.wait_for_function(
            "() => document.querySelector('[data-testid=health]').textContent.includes('dropped 1')",
            timeout=15_000,
        )
        text = health.inner_text()
        assert re.search(r"ingest \d+/s", text), text
        assert "records 1" in text
        assert health.locator(".bad").count() == 1
        page.assert_clean()
    finally:
        page.close()


def test_live_mode_keeps_up_with_two_thousand_records_a_second_without_freezing(
    browser: Any, fresh: WebDaemon, tmp_path: Path
) -> None:
    rate, seconds = 2000, 3.0
    page = Page(browser, fresh.base, tmp_path)
    try:
        page.open("/?live=1")
        page.wait_loads(1)
        # Frame gaps in the page: a frozen tab shows as one long gap.
        page.tab.evaluate(
            "() => { window.__gaps = []; let last = performance.now();"
            " const tick = (t) => { window.__gaps.push(t - last); last = t;"
            " requestAnimationFrame(tick); }; requestAnimationFrame(tick); }"
        )
        sent = 0
        with socket.create_connection(("127.0.0.1", fresh.tcp_port)) as s:
            t0 = time.monotonic()
            while (elapsed := time.monotonic() - t0) < seconds:
                due = min(int(elapsed * rate), int(rate * seconds)) - sent
                if due > 0:
                    s.sendall(
                        b"".join(
                            b"<14>1 - burst app - - - burst record %d\n" % (sent + i)
                            for i in range(due)
                        )
                    )
                    sent += due
                time.sleep(0.02)  # pacing the sender, not synchronising with it
        page.tab.wait_for_function(
            "n => Number(document.getElementById('list').dataset.received) >= n",
            arg=sent,
            timeout=15_000,
        )
        gaps = page.tab.evaluate("() => window.__gaps")
        assert max(gaps) < 1000, sorted(gaps)[-5:]
        assert page.held() == sent
        assert page.tab.locator("[data-testid=row]").count() < 100
        page.assert_clean()
    finally:
        page.close()


def test_a_field_facet_added_on_demand_counts_and_filters_by_its_values(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    d, recs = seeded
    if not d.supports("/fields") or not d.supports("/stats?by=fields.user_id"):
        pytest.skip("this daemon has no /fields or /stats?by=fields.NAME yet")
    page.open()
    page.wait_loads(1)
    page.tab.click("#facets h3 button:text('show')")
    page.tab.click("#facets .fieldlist button[data-field='fields.user_id']")
    facet = page.tab.locator("[data-testid=facet][data-field='fields.user_id'][data-value='3']")
    want = [r["id"] for r in reversed(recs) if r["user_id"] == 3]
    facet.wait_for()
    assert facet.get_attribute("data-count") == str(len(want))
    assert "facet=fields.user_id" in page.tab.url
    facet.click()
    page.wait_total(len(want))
    assert page.rows() == want[: len(page.rows())]
    page.assert_clean()


def test_a_search_that_does_not_parse_says_where_and_keeps_the_page_usable(
    page: Page, seeded: tuple[WebDaemon, list[dict[str, Any]]]
) -> None:
    d, _ = seeded
    if not d.supports("/logs?query=x"):
        pytest.skip("this daemon has no search language (query=) yet")
    page.open()
    page.wait_loads(1)
    page.tab.fill("[data-testid=search]", '"unclosed')
    page.tab.press("[data-testid=search]", "Enter")
    page.tab.wait_for_function("() => document.getElementById('error').textContent")
    assert re.search(r"query: .*column \d+", page.tab.inner_text("#error"))
    page.search("timeout")
    assert page.tab.inner_text("#error") == ""
    page.assert_clean(allow="status of 400")
