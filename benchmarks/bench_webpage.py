"""The chat page's weight and speed, in headless Chromium over loopback.

Measures, against `koala serve` in front of the sandbox (both in this process,
on a thread of their own):

- page weight: the bytes of our own files as sent (gzip), from the browser's
  Resource Timing, and how many sequential fetches the page needs: the HTML
  names every file it needs (a stylesheet, modulepreload links), so all of
  them are asked for at once, in one round trip after the HTML.
- first paint and first contentful paint (Paint Timing), median of N cold
  loads (a fresh browser context each: empty cache).
- a 2,000-piece reply, paced (1 ms apart) and unpaced: the longest Long Task
  (PerformanceObserver "longtask": the main thread busy for over 50 ms) while
  it streams and renders, and the time until it is complete on the page.
- hostile markdown: how long `renderMarkdown` takes on text built to be deep
  (20,000 nested quotes) or slow (100,000 unclosed `[`, 20,000 `[a](b`, a
  megabyte of words), or the error it throws.

Goals: under 100 KiB gzip in one round trip, first paint under 200 ms, no Long
Task over 50 ms (none at all, since a Long Task is one over 50 ms), hostile
markdown in linear time: well under a second for each sample.

    python benchmarks/bench_webpage.py [--loads 10] [--pieces 2000]

Needs Debian's chromium (or KOALA_CHROMIUM) and the playwright package.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, sync_playwright

from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.config import ServerConfig
from koala_chat.server.runner import serve_async

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KIB = 1024

LONG_TASKS = """() => {
    window.longTasks = [];
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
            window.longTasks.push([entry.startTime, entry.duration]);
        }
    }).observe({ type: "longtask", buffered: true });
}"""

RESOURCES = """() => performance.getEntriesByType("resource")
    .concat(performance.getEntriesByType("navigation"))
    .map((e) => ({
        name: e.name, size: e.encodedBodySize, wire: e.transferSize,
        start: e.fetchStart, end: e.responseEnd,
    }))"""


@contextmanager
def serving() -> Iterator[tuple[str, Sandbox]]:
    """Yield the base URL of `koala serve` in front of a fresh sandbox."""
    with Sandbox() as sandbox:
        config = ServerConfig(
            port=0,
            grace=0.5,
            provider_options={"api_endpoint": sandbox.api_endpoint, "max_retries": 0},
        )
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        loop_box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

        async def serve() -> None:
            stop = asyncio.Event()
            loop_box.append((asyncio.get_running_loop(), stop))
            await serve_async(config, stop=stop, started=ready.set_result)

        thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        thread.start()
        port = ready.result(10)
        try:
            yield f"http://127.0.0.1:{port}", sandbox
        finally:
            loop, stop = loop_box[0]
            loop.call_soon_threadsafe(stop.set)
            thread.join(10)


#: Resolves once the page has its first paint and first contentful paint.
_AWAIT_PAINTS = """() => new Promise((resolve) => {
  const check = () =>
    performance.getEntriesByType("paint").length >= 2
      ? resolve()
      : requestAnimationFrame(check);
  check();
})"""


def weight(browser: Browser, url: str) -> None:
    page = browser.new_page()
    page.goto(url + "/", wait_until="networkidle")
    entries = page.evaluate(RESOURCES)
    page.close()
    ours = [e for e in entries if "/v1/" not in e["name"]]
    total = sum(e["size"] for e in ours)
    html = next(e for e in ours if e["name"].endswith("/"))
    # The icon is fetched when the browser gets round to it, after the page.
    files = [e for e in ours if e is not html and not e["name"].endswith(".svg")]
    # One round trip after the HTML: every file was asked for before any of
    # them had arrived.
    one_wave = max(e["start"] for e in files) <= min(e["end"] for e in files)
    print(f"page weight: {total / KIB:.1f} KiB gzip in {len(ours)} files")
    for entry in sorted(ours, key=lambda e: e["start"]):
        name = entry["name"].removeprefix(url)
        print(f"  {name:<22} {entry['size']:>6} B")
    print(
        "  fetches: the HTML, then "
        + (
            f"all {len(files)} files at once (one round trip)"
            if one_wave
            else "files in more than one wave"
        )
    )


def first_paint(browser: Browser, url: str, loads: int) -> None:
    paint(browser, url + "/", loads, "the page")
    # The floor: a page of one paragraph that needs no fetch at all.
    paint(browser, "data:text/html,<p>floor</p>", loads, "floor")


def paint(browser: Browser, url: str, loads: int, label: str) -> None:
    paints: dict[str, list[float]] = {"first-paint": [], "first-contentful-paint": []}
    for _ in range(loads):
        context = browser.new_context()
        page = context.new_page()
        page.goto(url, wait_until="load")
        # A function, not wait_for_function's expression string: the page's
        # Content-Security-Policy forbids the eval that the latter needs.
        page.evaluate(_AWAIT_PAINTS)
        for entry in page.evaluate(
            "performance.getEntriesByType('paint').map(e => [e.name, e.startTime])"
        ):
            paints[entry[0]].append(entry[1])
        context.close()
    for name, times in paints.items():
        print(
            f"{label}, {name}: median {statistics.median(times):.0f} ms, "
            f"max {max(times):.0f} ms over {loads} cold loads"
        )


def long_reply(browser: Browser, url: str, sandbox: Sandbox, pieces: int) -> None:
    values = list(reply_pieces(pieces))
    for label, interval in (("paced 1 ms", 0.001), ("unpaced", 0.0)):
        page: Page = browser.new_page()
        page.goto(url + "/")
        page.get_by_label("Model", exact=True).wait_for()
        page.evaluate(LONG_TASKS)
        sandbox.push(Reply(values=values, interval=interval, done=True))
        prompt = page.get_by_role("textbox", name="Message", exact=True)
        prompt.fill("A long reply, please")
        sent_at = page.evaluate("performance.now()")
        started = time.perf_counter()
        prompt.press("Enter")
        page.get_by_role("button", name="Regenerate").wait_for(timeout=60_000)
        elapsed = time.perf_counter() - started
        shown = page.get_by_role("article", name="Koala").inner_text()
        assert values[-1].strip() in shown, "the reply did not arrive whole"
        page.wait_for_timeout(100)  # let the observer deliver the last entries
        # Long Tasks of the page's own loading came before; they are not the
        # reply's, and are shown apart.
        entries = page.evaluate("window.longTasks")
        tasks = [duration for start, duration in entries if start >= sent_at]
        loading = len(entries) - len(tasks)
        longest = max(tasks, default=0.0)
        print(
            f"{pieces}-piece reply, {label}: complete on the page in "
            f"{elapsed * 1000:.0f} ms; {len(tasks)} Long Tasks"
            + (f", the longest {longest:.0f} ms" if tasks else " (none over 50 ms)")
            + (f"; {loading} while the page loaded" if loading else "")
        )
        page.close()


#: Markdown built to be deep or slow, by name.
HOSTILE = {
    "20,000 nested quotes": ">" * 20_000 + " deep",
    "100,000 unclosed [": "[" * 100_000,
    "20,000 unclosed [a](b": "[a](b" * 20_000,
    "20,000 [a](": "[a](" * 20_000,
    "a megabyte of words": "word " * 200_000,
    "50,000 lines": "line\n" * 50_000,
}

_RENDER_TIMES = """async (samples) => {
    const { renderMarkdown } = await import("/static/markdown.js");
    const out = {};
    for (const [name, text] of Object.entries(samples)) {
        const start = performance.now();
        try {
            renderMarkdown(text);
            out[name] = `${(performance.now() - start).toFixed(0)} ms`;
        } catch (error) {
            out[name] = `throws ${error.name}: ${error.message}`;
        }
    }
    return out;
}"""


def hostile_markdown(browser: Browser, url: str) -> None:
    page = browser.new_page()
    page.goto(url + "/")
    for name, result in page.evaluate(_RENDER_TIMES, HOSTILE).items():
        print(f"markdown, {name}: {result}")
    page.close()


def reply_pieces(count: int) -> Iterator[str]:
    """Yield a reply of `count` pieces with paragraphs, a list and code."""
    for n in range(count):
        if n % 200 == 100:
            yield "\n\n```python\nfor koala in trees:\n    koala.sleep(20)\n```\n\n"
        elif n % 50 == 0:
            yield f"\n\n- point {n}\n- and **another**\n\n"
        else:
            yield f" word{n}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--pieces", type=int, default=2000)
    args = parser.parse_args()
    executable = os.environ.get("KOALA_CHROMIUM") or shutil.which("chromium")
    if executable is None:
        raise SystemExit("chromium is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS)
        try:
            with serving() as (url, sandbox):
                weight(browser, url)
                first_paint(browser, url, args.loads)
                long_reply(browser, url, sandbox, args.pieces)
                hostile_markdown(browser, url)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
