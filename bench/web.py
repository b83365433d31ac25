"""Benchmark the web page in chromium against a daemon holding many records:
time to the first rows, time to the histogram, DOM size, scrolling through
10,000 rows, and live mode under a steady stream of new records.

The daemon is bench/api.py's (seeded in process, spread over the last 50
minutes); the browser is the system's chromium driven by playwright. Run
from the repo root:

    .venv/bin/python bench/web.py                 # 1M records, 3 runs, ~3 minutes
    .venv/bin/python bench/web.py --records 100000 --runs 1 --live-seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
# Frame times in the page: a requestAnimationFrame loop noting each gap.
FRAME_MONITOR = """() => {
  window.__frames = [];
  let last = performance.now();
  const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""
DOM_NODES = "() => document.getElementsByTagName('*').length"


def start_daemon(records: int) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "bench", "api.py"), "--serve", str(records)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("bench daemon failed to start")
    return proc, json.loads(line)


def frames(page: Any) -> dict[str, float]:
    f = sorted(page.evaluate("() => window.__frames.splice(0)"))
    if not f:
        return {"frames": 0}
    return {
        "frames": len(f),
        "p50_ms": round(f[len(f) // 2], 1),
        "p95_ms": round(f[int(len(f) * 0.95)], 1),
        "max_ms": round(f[-1], 1),
    }


def first_load(browser: Any, base: str, target: str = "/") -> dict[str, Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    t0 = time.perf_counter()
    page.goto(base + target)
    page.wait_for_selector("[data-testid=row]", timeout=60_000)
    wall = time.perf_counter() - t0
    page.wait_for_function(
        "() => document.querySelector('[data-testid=histogram]').dataset.readyAt", timeout=120_000
    )
    out = {
        "first_rows_ms": int(page.get_attribute("#list", "data-first-rows-at") or 0),
        "first_rows_wall_ms": round(wall * 1000),
        "histogram_ms": int(page.get_attribute("[data-testid=histogram]", "data-ready-at") or 0),
        "total": int(page.get_attribute("[data-testid=histogram]", "data-total") or 0),
        "dom_nodes": page.evaluate(DOM_NODES),
    }
    ctx.close()
    return out


def scroll_10k(browser: Any, base: str) -> dict[str, Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(base + "/")
    page.wait_for_selector("[data-testid=row]", timeout=60_000)
    t0 = time.perf_counter()
    while int(page.get_attribute("#list", "data-rows") or 0) < 10_000:
        page.eval_on_selector("#list", "l => { l.scrollTop = l.scrollHeight; }")
        page.wait_for_timeout(50)
        if time.perf_counter() - t0 > 120:
            break
    loaded = time.perf_counter() - t0
    page.eval_on_selector("#list", "l => { l.scrollTop = 0; }")
    page.evaluate(FRAME_MONITOR)
    # Scroll the whole list, 600 px a frame, as a fast wheel or a dragged scrollbar would.
    page.evaluate(
        """() => new Promise((done) => {
      const l = document.getElementById('list');
      const step = () => {
        if (l.scrollTop + l.clientHeight >= l.scrollHeight - 1) return done();
        l.scrollTop += 600; requestAnimationFrame(step);
      };
      requestAnimationFrame(step);
    })"""
    )
    out = {
        "rows_held": int(page.get_attribute("#list", "data-rows") or 0),
        "load_10k_s": round(loaded, 1),
        "dom_nodes": page.evaluate(DOM_NODES),
        "row_nodes": page.locator("[data-testid=row]").count(),
        **frames(page),
    }
    ctx.close()
    return out


def feed(port: int, rate: int, seconds: float, sent: list[int]) -> None:
    """Syslog over TCP at `rate` records/s, in 20 ms slices."""
    sock = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - t0) < seconds:
        due = int(elapsed * rate) - n
        if due > 0:
            lines = b"".join(
                b"<14>1 - live-host livebench - - - live record %d\n" % (n + i) for i in range(due)
            )
            sock.sendall(lines)
            n += due
        time.sleep(0.02)
    sent.append(n)
    sock.close()


def live(browser: Any, base: str, tcp: int, rate: int, seconds: float) -> dict[str, Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(base + "/?live=1&start=-5m")
    page.wait_for_selector("[data-testid=row]", timeout=60_000)
    page.wait_for_timeout(1000)
    page.evaluate(FRAME_MONITOR)
    before = int(page.get_attribute("#list", "data-received") or 0)
    sent: list[int] = []
    t = threading.Thread(target=feed, args=(tcp, rate, seconds, sent))
    t0 = time.perf_counter()
    t.start()
    t.join()
    # Wait for the page to have everything (or give up after 30 s).
    deadline = time.perf_counter() + 30
    got = 0
    while time.perf_counter() < deadline:
        got = int(page.get_attribute("#list", "data-received") or 0) - before
        if got >= sent[0]:
            break
        page.wait_for_timeout(100)
    took = time.perf_counter() - t0
    out = {
        "rate_sent": rate,
        "sent": sent[0],
        "received": got,
        "caught_up_s": round(took, 1),
        "shown_per_s": round(got / took),
        "rows_held": int(page.get_attribute("#list", "data-rows") or 0),
        "dom_nodes": page.evaluate(DOM_NODES),
        **frames(page),
    }
    ctx.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--live-rate", type=int, action="append")
    ap.add_argument("--live-seconds", type=float, default=10)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    proc, info = start_daemon(args.records)
    base = f"http://127.0.0.1:{info['http']}"
    print(json.dumps({"daemon": info}), flush=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            loads = []
            for _ in range(args.runs):
                loads.append(first_load(browser, base))
                print(json.dumps({"first_load": loads[-1]}), flush=True)
            med = {k: statistics.median(r[k] for r in loads) for k in loads[0]}
            print(json.dumps({"first_load_median": med}), flush=True)
            # A phrase search (about 1 record in 1,000 matches) over the same hour.
            target = "/?query=%22served+in+5+ms%22"
            searches = [first_load(browser, base, target) for _ in range(args.runs)]
            med = {k: statistics.median(r[k] for r in searches) for k in searches[0]}
            print(json.dumps({"search_median": {"target": target, **med}}), flush=True)
            print(json.dumps({"scroll": scroll_10k(browser, base)}), flush=True)
            for rate in args.live_rate or [2000, 5000]:
                print(
                    json.dumps({"live": live(browser, base, info["tcp"], rate, args.live_seconds)}),
                    flush=True,
                )
            browser.close()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(60)


if __name__ == "__main__":
    main()
