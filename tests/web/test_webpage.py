"""The chat page at `/`: its files and headers, then the page in Chromium.

The browser tests use the page as a person does, by role and accessible name:
they type, send, watch the reply arrive, stop it, reload, switch, export and
import, against `koala serve` in front of the scripted sandbox over real TCP.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, Route, expect

from browser import (
    SCREENSHOTS,
    PageWatch,
    close_settings,
    open_chat,
    open_settings,
    replies,
    say,
)
from koala_chat._cli.interactive import load_messages
from koala_chat.sandbox import Reply, Sandbox, default_reply
from koala_chat.server.webpage import static_files
from server_fixtures import ServerThread, fetch

# --- the files and their headers --------------------------------------------


def test_the_page_is_served_with_strict_headers(koala_server: ServerThread) -> None:
    status, headers, body = fetch(koala_server.url + "/", **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Encoding"] == "gzip"
    html = gzip.decompress(body).decode()
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy
    # The stylesheet is inside the page, allowed by its hash alone.
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/]+=*';", policy)
    assert "<style>/* The chat page" in html
    assert 'rel="stylesheet"' not in html
    assert "unsafe" not in policy
    assert "http" not in policy  # no remote origin
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"
    # Every script is a file of ours: none is inline, none is remote.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts == [(' type="module" src="/static/app.js"', "")]
    assert "//" not in "".join(re.findall(r'(?:src|href)="([^"]*)"', html))

    status, headers, _ = fetch(
        koala_server.url + "/", **{"If-None-Match": headers["ETag"]}
    )
    assert status == 304

    status, headers, body = fetch(koala_server.url + "/static/app.js")
    assert status == 200
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "Content-Encoding" not in headers
    assert body == static_files()["app.js"].body
    assert headers["X-Content-Type-Options"] == "nosniff"

    for missing in (
        "/static/nothing.js",
        "/static/..%2Fwebpage.py",
        "/static/index.html",
    ):
        status, _, body = fetch(koala_server.url + missing)
        assert status == 404, missing
        assert json.loads(body)["error"]["code"] == "not_found"


def test_the_page_needs_no_key_but_the_api_does(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(api_key="sesame")
    assert fetch(server.url + "/")[0] == 200
    assert fetch(server.url + "/static/style.css")[0] == 200
    assert fetch(server.url + "/v1/models")[0] == 401


# --- the page in a browser ---------------------------------------------------


#: The first piece of the reply the screenshots show mid-stream.
INTRO = """Here are three facts about koalas:

1. They sleep up to **twenty hours** a day.
2. They eat almost nothing but *eucalyptus* leaves.
3. A newborn koala is called a `joey`.

```python
facts = ["sleepy", "picky", "small"]
print(", ".join(facts))
```

In short, koalas """


def screenshots(page: Page) -> None:
    """Write the page as it looks now, light and dark, for a person to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.screenshot(path=SCREENSHOTS / f"chat-{scheme}.png")
    page.emulate_media(color_scheme="light")


def test_a_reply_streams_stops_and_survives_a_reload(
    page: Page, sandbox: Sandbox, koala_server: ServerThread
) -> None:
    open_chat(page, koala_server)
    # A Koala server offers both settings, the configured connection first.
    settings = open_settings(page)
    expect(settings.get_by_role("radio", name="Automatic")).to_be_checked()
    expect(settings.get_by_role("switch", name="Search the web")).to_be_visible()
    close_settings(page)

    # Shift+Enter is a new line; Enter sends.
    prompt = page.get_by_role("textbox", name="Message", exact=True)
    prompt.fill("Tell me")
    prompt.press("Shift+Enter")
    prompt.press_sequentially("about koalas")
    expect(prompt).to_have_value("Tell me\nabout koalas")
    assert sandbox.requests == []
    sandbox.push(Reply(values=[INTRO, "sleep ", "**a lot**."], stall_at=1, done=True))
    prompt.press("Enter")
    expect(prompt).to_have_value("")
    reply = replies(page).last
    # The first piece shows while the rest is held upstream.
    expect(reply).to_contain_text("In short, koalas")
    assert sandbox.wait_stalled()
    expect(reply).not_to_contain_text("koalas sleep")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_hidden()
    screenshots(page)
    # Every control has a name a screen reader can say.
    controls = page.locator("button, input, select, textarea, summary")
    for index in range(controls.count()):
        if controls.nth(index).is_visible():
            expect(controls.nth(index)).to_have_accessible_name(re.compile(r"\S"))
    sandbox.release()
    expect(reply).to_contain_text("In short, koalas sleep a lot.")
    expect(reply.get_by_text("a lot", exact=True)).to_have_js_property(
        "tagName", "STRONG"
    )
    expect(reply.get_by_role("listitem")).to_have_count(3)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = reply.get_by_role("button", name="Copy python code")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == (
        'facts = ["sleepy", "picky", "small"]\nprint(", ".join(facts))'
    )
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    assert sandbox.requests[0].json == {
        "input": "Tell me\nabout koalas",
        "inputHistory": [],
        "outputHistory": [],
        "model": "gpt-4o-mini",
    }

    # Stop mid-reply: the request ends, so the upstream sees the client leave.
    sandbox.push(Reply(values=["Half ", "way"], stall_at=1, done=True))
    say(page, "And then?")
    expect(replies(page).last).to_contain_text("Half")
    assert sandbox.wait_stalled()
    page.get_by_role("button", name="Stop").click()
    assert sandbox.wait_disconnect()
    expect(replies(page).last).to_contain_text("Stopped.")
    assert sandbox.requests[1].json is not None
    assert sandbox.requests[1].json["outputHistory"] == [INTRO + "sleep **a lot**."]

    # Regenerate: a spinner until the first piece, and Esc stops that too.
    sandbox.push(Reply(values=["Again ", "and again"], stall_at=0, done=True))
    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("status", name="Waiting for the reply")).to_be_visible()
    assert sandbox.wait_stalled()
    page.keyboard.press("Escape")
    assert sandbox.wait_disconnect(count=2)
    expect(replies(page).last).to_contain_text("Stopped.")

    page.reload()
    expect(page.get_by_role("article", name="You")).to_contain_text(
        ["Tell me\nabout koalas", "And then?"]
    )
    expect(replies(page)).to_have_count(2)
    expect(replies(page).first).to_contain_text("koalas sleep a lot.")
    expect(replies(page).last).to_have_text("Stopped.Regenerate")
    expect(page.get_by_role("heading", level=1)).to_have_text("Tell me about koalas")


def test_conversations_switch_rename_edit_export_and_import(
    page: Page, sandbox: Sandbox, koala_server: ServerThread, tmp_path: Path
) -> None:
    open_chat(page, koala_server)
    open_settings(page).get_by_label("System prompt").fill("Answer briefly.")
    close_settings(page)
    say(page, "Hello koala")
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()

    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("article")).to_have_count(0)
    expect(page.get_by_label("System prompt")).to_have_value("")
    say(page, "Second chat")
    expect(replies(page)).to_contain_text('You said: "Second chat"')

    page.get_by_role("button", name="Hello koala", exact=True).click()
    expect(page.get_by_role("article", name="You")).to_contain_text(["Hello koala"])
    expect(page.get_by_label("System prompt")).to_have_value("Answer briefly.")
    page.get_by_role("button", name="Rename Hello koala").click()
    title = page.get_by_label("New title")
    title.fill("Koala facts")
    title.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Koala facts")
    expect(
        page.get_by_role("button", name="Koala facts", exact=True)
    ).to_have_attribute("aria-current", "page")

    # Edit takes the last question back into the box; sending replaces it.
    page.get_by_role("button", name="Edit").click()
    prompt = page.get_by_role("textbox", name="Message", exact=True)
    expect(prompt).to_have_value("Hello koala")
    prompt.fill("Hello again")
    prompt.press("Enter")
    expect(replies(page)).to_contain_text('You said: "Hello again')
    expect(page.get_by_role("article", name="You")).to_contain_text(["Hello again"])
    answer = "".join(default_reply(sandbox.requests[-1].json))  # type: ignore[arg-type]

    with page.expect_download() as download:
        page.get_by_role("button", name="Export").click()
    saved = tmp_path / "koala-facts.json"
    download.value.save_as(saved)
    expected = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hello again"},
        {"role": "assistant", "content": answer},
    ]
    assert json.loads(saved.read_text(encoding="utf-8")) == expected
    # The same file `koala chat`'s /load reads.
    assert load_messages(saved) == expected

    page.get_by_role("button", name="Delete Koala facts").click()
    expect(page.get_by_role("button", name="Koala facts", exact=True)).to_have_count(0)
    expect(page.get_by_role("heading", level=1)).to_have_text("Second chat")
    page.get_by_label("Import a conversation").set_input_files(saved)
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello again")
    expect(replies(page)).to_have_text([answer + "Regenerate"])
    expect(page.get_by_label("System prompt")).to_have_value("Answer briefly.")
    expect(page.get_by_role("listitem")).to_have_count(2)

    # A phone: the list hides behind a button.
    page.set_viewport_size({"width": 390, "height": 760})
    new_chat = page.get_by_role("button", name="New chat")
    expect(new_chat).not_to_be_in_viewport()
    page.get_by_role("button", name="Show conversations").click()
    expect(new_chat).to_be_in_viewport()


def test_errors_are_plain_words_and_markup_stays_text(
    page: Page,
    sandbox: Sandbox,
    start_server: Callable[..., ServerThread],
    page_watch: PageWatch,
) -> None:
    # A port that was bound and let go: nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = {"api_endpoint": f"http://127.0.0.1:{port}/api/gpt/"}
    open_chat(page, start_server(provider_options=nowhere))
    say(page, "Anyone there?")
    expect(replies(page).get_by_role("alert")).to_contain_text(
        "The server cannot reach Koala."
    )

    open_chat(page, start_server())
    sandbox.push(Reply(values=[], done=True))
    say(page, "Say nothing")
    expect(replies(page).get_by_role("alert")).to_have_text(
        "Koala sent an empty reply. Try Regenerate."
    )
    sandbox.push(Reply(status=429, headers={"Retry-After": "7"}, body=b"slow down"))
    page.get_by_role("button", name="Regenerate").click()
    expect(replies(page).get_by_role("alert")).to_have_text(
        "Koala is rate limiting us: try again in 7 seconds."
    )

    sandbox.push(
        Reply(
            status=403,
            headers={"cf-mitigated": "challenge"},
            body=b"<html><title>Just a moment...</title></html>",
            content_type="text/html",
        )
    )
    page.get_by_role("button", name="Regenerate").click()
    expect(replies(page).get_by_role("alert")).to_contain_text("Cloudflare challenge")

    # A failure after the first piece keeps the piece and says what happened.
    sandbox.push(Reply(body=b'data: "Partial "\n\ndata: {broken\n\n'))
    page.get_by_role("button", name="Regenerate").click()
    expect(replies(page).get_by_role("alert")).to_contain_text("not a chat reply")
    expect(replies(page)).to_contain_text("Partial")

    hostile = [
        "<script>alert(1)</script> and ",
        "<img src=x onerror=alert(1)> and [a link](javascript:alert(1))",
    ]
    sandbox.push(Reply(values=hostile, done=True))
    page.get_by_role("button", name="Regenerate").click()
    expect(replies(page)).to_contain_text("".join(hostile[:1]) + hostile[1][:28])
    expect(replies(page)).to_contain_text("[a link](javascript:alert(1))")
    expect(replies(page).get_by_role("alert")).to_have_count(0)
    counts = page.evaluate(
        """() => ({
            inline: document.querySelectorAll("script:not([src])").length,
            images: document.querySelectorAll("img, [onerror]").length,
            links: document.querySelectorAll("a[href^='javascript']").length,
        })"""
    )
    assert counts == {"inline": 0, "images": 0, "links": 0}
    assert page_watch.dialogs == []


def test_a_key_protected_server_asks_for_the_key_once(
    page: Page, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(api_key="sesame")
    page.goto(server.url + "/")
    dialog = page.get_by_role("dialog", name="API key")
    expect(dialog).to_be_visible()
    dialog.get_by_label("API key").fill("sesame")
    dialog.get_by_role("button", name="Use key").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")
    say(page, "Hi")
    expect(replies(page)).to_contain_text('You said: "Hi"')

    page.reload()
    expect(replies(page)).to_contain_text('You said: "Hi"')
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")
    say(page, "Again")
    expect(replies(page).last).to_contain_text('You said: "Again"')
    expect(dialog).to_be_hidden()
    stored = page.evaluate(
        "() => [JSON.stringify(localStorage), JSON.stringify(sessionStorage)]"
    )
    assert "sesame" not in stored[0]
    assert "sesame" in stored[1]


def test_switches_show_only_where_the_server_offers_them(
    page: Page, sandbox: Sandbox, koala_server: ServerThread
) -> None:
    # A model list without the `koala` member: neither switch.
    def withhold(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        del body["koala"]
        route.fulfill(response=response, json=body)

    page.route("**/v1/models", withhold)
    open_chat(page, koala_server)
    settings = open_settings(page)
    expect(settings.get_by_role("group", name="Connection")).to_be_hidden()
    expect(settings.get_by_label("Search the web")).to_be_hidden()
    expect(settings.get_by_label("System prompt")).to_be_visible()
    page.unroute("**/v1/models")

    # A server configured with one dialect shows it as the conversation's.
    def configured(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["koala"]["protocol"] = "history"
        route.fulfill(response=response, json=body)

    page.route("**/v1/models", configured)
    open_chat(page, koala_server)
    settings = open_settings(page)
    classic = settings.get_by_role("radio", name="Classic")
    expect(classic).to_be_checked()
    expect(classic).to_have_accessible_description(re.compile(r"server's default\.$"))
    page.unroute("**/v1/models")

    open_chat(page, koala_server)
    settings = open_settings(page)
    expect(settings.get_by_role("radio", name="Automatic")).to_be_checked()
    close_settings(page)
    with page.expect_request("**/v1/chat/completions") as untouched:
        say(page, "Hi")
    assert untouched.value.post_data_json.keys() == {"model", "messages", "stream"}
    expect(replies(page)).to_contain_text('You said: "Hi"')

    open_settings(page).get_by_role("radio", name="Chat page").check()
    settings.get_by_role("switch", name="Search the web").check()
    close_settings(page)
    with page.expect_request("**/v1/chat/completions") as changed:
        say(page, "Search")
    assert changed.value.post_data_json["protocol"] == "messages"
    assert changed.value.post_data_json["web_search"] is True
    expect(replies(page).last).to_contain_text('You said: "Search"')
    upstream = sandbox.requests[-1]
    assert upstream.json is not None
    assert "messages" in upstream.json
    assert upstream.headers["flag-real-time-data"] == "true"


def test_rendering_the_tail_alone_matches_rendering_the_whole(
    page: Page, koala_server: ServerThread
) -> None:
    # A streaming reply renders only the text after its finished blocks; at
    # every length of every sample, that gives the nodes a full render gives.
    samples = [
        INTRO + "sleep **a lot**.\n\n> quoted\n> more\n\nend",
        "- item\n  ```\n  code in a list\n\n  ```\n\n"
        "```js\nlet a;\n\nlet b;\n```\n\nafter",
        "para one\r\n\r\n~~~\r\nfence\r\n\r\n~~~\r\n\r\n# Heading\n\n3. three\n4. four",
    ]
    page.goto(koala_server.url + "/")
    mismatches = page.evaluate(
        """async (samples) => {
            const { renderMarkdown, stableEnd } = await import("/static/markdown.js");
            const html = (text) => {
                const box = document.createElement("div");
                box.append(renderMarkdown(text));
                return box.innerHTML;
            };
            const bad = [];
            for (const sample of samples) {
                for (let n = 0; n <= sample.length; n++) {
                    const text = sample.slice(0, n);
                    const end = stableEnd(text);
                    const split = html(text.slice(0, end)) + html(text.slice(end));
                    if (split !== html(text)) bad.push(text);
                }
            }
            return bad;
        }""",
        samples,
    )
    assert mismatches == []
