"""How the web client keeps up with a busy, long conversation: Chromium against the real server.

    .venv/bin/python -m bench.webclient               # 1,000 live messages, then 2,000 rows
    .venv/bin/python -m bench.webclient --count 50    # a quick look (tests/ops/test_bench_smoke.py runs it tiny)

A real server (`secure-link serve`, one worker, the built client) on a scratch
database of DATABASE_URL or the local PostgreSQL. Alice reads her chat with Bob in
Debian's Chromium (1280×800); Bob sends `--count` messages over his WebSocket as
fast as the server acknowledges them, twice, so the conversation reaches twice that
many rows. The page records when each chat frame arrived and how long its handling
kept the main thread (a frame's handler to the next task: the store, React's render
and commit, the list's layout), its long tasks (over 50 ms), and the Event Timing of
keys typed. Figures:

- the first `--count` messages, live: from the first frame's arrival to the newest row
  on screen, beside the span over which they arrived (the server's pace), and the long
  tasks meanwhile;
- the second `--count`, sent while Alice's page is offline: they arrive at once when it
  is back (the socket's `sync`), so the client alone sets the pace;
- with that many rows, one message at a time: main-thread time per message;
- typing 36 characters there: each key's time to the next task (beside the same typed
  into a plain input outside React, which measures the machine and the probe), and the
  key events whose handlers ran 16 ms or more by the Event Timing API (which reports only
  events that took 16 ms to the next paint, a frame's wait included).

Prints a table and writes bench/results/webclient.json. Timing is measured here, never
asserted by a test (the smoke test checks only that every message was displayed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright
from websockets.asyncio.client import connect

from secure_link.ops import devdb
from secure_link.schema import apply_schema

from .scenarios import SERVER_ENV, running, server_argv

RESULTS = Path(__file__).resolve().parent / "results" / "webclient.json"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PHRASE = "correct horse battery staple"
TEXT = "a message of about the usual length, sixty or so characters."
TYPED = "typing thirty-six characters, timed!"
IN_FLIGHT = 50  # Bob's sends awaiting their ack at once
KEY_EVENTS = {"keydown", "keypress", "beforeinput", "input", "keyup"}

# Before the app loads: record frames (arrival, and time to the next task), long tasks and slow inputs.
PROBES = """
window.__bench = { frames: [], longtasks: [], slowInputs: [], keys: [] };
const after = (done) => { const channel = new MessageChannel(); channel.port1.onmessage = done; channel.port2.postMessage(0); };
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__bench.longtasks.push([entry.startTime, entry.duration]);
}).observe({ type: "longtask", buffered: true });
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__bench.slowInputs.push([entry.name, entry.duration, entry.processingEnd - entry.processingStart]);
  }
}).observe({ type: "event", durationThreshold: 16, buffered: true });
const native = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage");
Object.defineProperty(WebSocket.prototype, "onmessage", {
  configurable: true,
  get() { return native.get.call(this); },
  set(handler) {
    native.set.call(this, (event) => {
      const start = performance.now();
      handler(event);
      if (typeof event.data === "string" && event.data.startsWith('{"type":"chat"')) {
        const record = [start, null];
        window.__bench.frames.push(record);
        after(() => { record[1] = performance.now() - start; });
      }
    });
  },
});
document.addEventListener("keydown", () => {
  const start = performance.now();
  after(() => window.__bench.keys.push(performance.now() - start));
}, true);
"""

SHOWN = """(id) => document.querySelector(`[role=log] li[data-id="${id}"]`) ? performance.now() : null"""


async def scratch_server(pg_url: str):  # type: ignore[no-untyped-def]
    """A database of its own and a server on it: the context manager and the database's name."""
    name = f"bench_web_{secrets.token_hex(3)}"
    await devdb.create_database(pg_url, name)
    url = devdb.with_database(pg_url, name)
    await apply_schema(url)
    env = {**SERVER_ENV, "DATABASE_URL": url, "BROADCAST_URL": url,
           "MASTER_KEY_FILE": str(Path(tempfile.mkdtemp(prefix="bench-keys-")) / "master-key")}
    return running(server_argv(), env, None), name


async def register(http: httpx.AsyncClient, who: str) -> dict[str, Any]:
    answer = await http.post("/api/register/", json={"username": f"{who}{secrets.token_hex(3)}", "phrase": PHRASE})
    answer.raise_for_status()
    return answer.json()


async def send_burst(address: str, token: str, to: str, count: int, label: str) -> tuple[float, int]:
    """Bob sends `count` messages, IN_FLIGHT awaiting their ack at once; seconds taken, and the last id."""
    last_id = 0
    async with connect(f"ws://{address}/ws/chat/", additional_headers={"Authorization": f"Bearer {token}"},
                       max_size=2**20) as socket:
        while json.loads(await socket.recv())["type"] != "ready":
            pass
        started = time.perf_counter()
        sent = acked = 0
        while acked < count:
            while sent < count and sent - acked < IN_FLIGHT:
                await socket.send(json.dumps({"type": "chat", "to": to, "message": f"{label} {sent}: {TEXT}",
                                              "client_id": f"{label}-{sent}"}))
                sent += 1
            frame = json.loads(await socket.recv())
            if frame["type"] == "ack":
                acked += 1
                last_id = max(last_id, frame["message"]["id"])
            elif frame["type"] == "error":
                raise RuntimeError(f"a send was refused: {frame}")
        return time.perf_counter() - started, last_id


async def shown_at(page: Page, message_id: int, timeout_s: float) -> float:
    """The page's clock when the row of this message is in the page."""
    handle = await page.wait_for_function(SHOWN, arg=message_id, polling="raf", timeout=timeout_s * 1000)
    return float(await handle.json_value())


async def burst(page: Page, address: str, token: str, alice: str, count: int, label: str,
                offline: bool = False) -> dict[str, Any]:
    """One burst of `count` messages: how long until the newest is on screen, and what it cost. Live,
    they arrive as fast as the server sends them; `offline`, Alice's page is cut off while Bob sends
    and they arrive at once when it is back (the socket's catch-up), so only the client sets the pace."""
    before = await page.evaluate("window.__bench.frames.length")
    longtasks_before = await page.evaluate("window.__bench.longtasks.length")
    if offline:
        await page.context.set_offline(True)
        await page.get_by_role("status").filter(has_text="Offline").wait_for()
    send_s, last_id = await send_burst(address, token, alice, count, label)
    if offline:
        await page.context.set_offline(False)
    shown = await shown_at(page, last_id, timeout_s=60 + count / 10)
    # after an outage the newest row may show (reloaded history) before every replayed frame is in
    await page.wait_for_function("(n) => window.__bench.frames.length >= n", arg=before + count,
                                 timeout=(60 + count / 10) * 1000)
    frames = (await page.evaluate("window.__bench.frames"))[before:]
    first, last = frames[0][0], frames[-1][0]
    shown = max(shown, last)  # caught up: the newest shown (a reload may show it first) and every frame in
    tasks = [task for task in (await page.evaluate("window.__bench.longtasks"))[longtasks_before:]
             if task[0] + task[1] >= first]
    return {"messages": count, "frames_seen": len(frames), "send_s": round(send_s, 3),
            "arrival_span_s": round((last - first) / 1000, 3), "displayed_s": round((shown - first) / 1000, 3),
            "lag_after_last_arrival_s": round((shown - last) / 1000, 3),
            "long_tasks": len(tasks), "long_task_ms_total": round(sum(d for _, d in tasks)),
            "long_task_ms_max": round(max((d for _, d in tasks), default=0))}


async def one_at_a_time(page: Page, address: str, token: str, alice: str, count: int) -> dict[str, Any]:
    """Messages one by one, each waited for on screen: main-thread time per message."""
    costs = []
    for n in range(count):
        before = await page.evaluate("window.__bench.frames.length")
        _, last_id = await send_burst(address, token, alice, 1, f"single{n}")
        await shown_at(page, last_id, timeout_s=30)
        await page.wait_for_function("(n) => window.__bench.frames.length > n && window.__bench.frames.at(-1)[1] !== null",
                                     arg=before)
        costs.append(await page.evaluate("window.__bench.frames.at(-1)[1]"))
    return {"messages": count, "ms_median": round(statistics.median(costs), 2), "ms_max": round(max(costs), 2)}


async def keys_typed(page: Page, selector: str) -> tuple[list[float], list[list[Any]]]:
    """Type TYPED into the element: each key's time to the next task, and inputs slow to paint."""
    await page.evaluate("window.__bench.keys = []; window.__bench.slowInputs = []")
    box = page.locator(selector)
    await box.click()
    await box.press_sequentially(TYPED, delay=40)
    await page.wait_for_timeout(300)
    return await page.evaluate("window.__bench.keys"), await page.evaluate("window.__bench.slowInputs")


async def typing(page: Page) -> dict[str, Any]:
    """36 characters typed into the message box: processing per key, and keys slow to paint; beside
    them, the same typed into a plain input outside React, which measures the machine and the probe."""
    await page.evaluate("document.body.insertAdjacentHTML('beforeend', '<input id=bench-plain aria-label=plain>')")
    plain, _ = await keys_typed(page, "#bench-plain")
    keys, slow = await keys_typed(page, "#message-box")
    handled = [processing for name, _, processing in slow if name in KEY_EVENTS]
    return {"keys": len(keys), "ms_median": round(statistics.median(keys), 2), "ms_max": round(max(keys), 2),
            "plain_input_ms_median": round(statistics.median(plain), 2),
            "handlers_over_16ms": sum(1 for ms in handled if ms >= 16),
            "slowest_handler_ms": round(max(handled, default=0), 1)}


async def measure(address: str, count: int, singles: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as http:
        bob = await register(http, "bob")
        await asyncio.sleep(0)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(base_url=f"http://{address}", viewport={"width": 1280, "height": 800})
            await context.add_init_script(PROBES)
            page = await context.new_page()
            await page.goto("/")
            alice = f"alice{secrets.token_hex(3)}"
            await page.get_by_label("Username").fill(alice)
            await page.get_by_label("Phrase").fill(PHRASE)
            await page.get_by_role("button", name="Register").click()
            await page.get_by_role("status").filter(has_text="Connected").wait_for()
            await send_burst(address, bob["token"], alice, 1, "hello")
            await page.get_by_role("button", name=bob["user"]["username"]).click()
            await page.get_by_role("log").get_by_text("hello 0", exact=False).wait_for()
            first = await burst(page, address, bob["token"], alice, count, "first")
            second = await burst(page, address, bob["token"], alice, count, "second", offline=True)
            rows_in_page = await page.locator("[role=log] li[data-id]").count()
            single = await one_at_a_time(page, address, bob["token"], alice, singles)
            typed = await typing(page)
        finally:
            await browser.close()
    return {"count": count, "first_burst": first, "second_burst": second, "rows_in_store": 2 * count + 1,
            "rows_in_page": rows_in_page, "one_at_a_time": single, "typing": typed, "load_average": os.getloadavg()}


async def run(pg_url: str, count: int, singles: int) -> dict[str, Any]:
    server, name = await scratch_server(pg_url)
    try:
        async with server as process:
            return await measure(process.address, count, singles)
    finally:
        await devdb.drop_database(pg_url, name)


def table(result: dict[str, Any]) -> str:
    count, first, second = result["count"], result["first_burst"], result["second_burst"]
    single, typed = result["one_at_a_time"], result["typing"]
    rows = [
        (f"{count} live messages displayed (rows 1–{count})", f"{first['displayed_s']:.2f} s"),
        ("  ...arriving over", f"{first['arrival_span_s']:.2f} s"),
        ("  ...long tasks: count / total / longest",
         f"{first['long_tasks']} / {first['long_task_ms_total']} / {first['long_task_ms_max']} ms"),
        (f"{count} more, arriving at once after an outage (rows {count + 1}–{2 * count})", f"{second['displayed_s']:.2f} s"),
        ("  ...arriving over", f"{second['arrival_span_s']:.2f} s"),
        ("  ...long tasks: count / total / longest",
         f"{second['long_tasks']} / {second['long_task_ms_total']} / {second['long_task_ms_max']} ms"),
        (f"rows in the page, of {result['rows_in_store']}", f"{result['rows_in_page']}"),
        (f"one more message, main thread (median / max of {single['messages']})",
         f"{single['ms_median']:.1f} / {single['ms_max']:.1f} ms"),
        (f"a key typed, main thread (median / max of {typed['keys']})", f"{typed['ms_median']:.1f} / {typed['ms_max']:.1f} ms"),
        ("  ...the same into a plain input outside React (median)", f"{typed['plain_input_ms_median']:.1f} ms"),
        ("key events whose handlers took 16 ms or more (Event Timing)", f"{typed['handlers_over_16ms']}"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    lines = [f"{'figure':<{width}}value"] + [f"{label:<{width}}{value}" for label, value in rows]
    lines.append(f"(load average {result['load_average'][0]:.1f})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="messages per burst (two bursts)")
    parser.add_argument("--singles", type=int, default=20, help="messages sent one at a time afterwards")
    args = parser.parse_args()
    result = asyncio.run(run(os.environ.get("DATABASE_URL") or LOCAL_PG, args.count, args.singles))
    print(table(result))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
