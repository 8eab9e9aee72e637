"""The chat page as a product: its welcome, its phone layout, its stillness, its words.

In headless Chromium against `koala serve` in front of the scripted sandbox,
by role and accessible name: the empty state and its suggested prompts, the
one-row header and the settings sheet at 390 px, no layout shift while a
reply starts (the Layout Instability API), errors as sentences, and the image
mode of a server with the upstream key.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable

from playwright.sync_api import Page, expect

from browser import close_settings, open_chat, open_settings, replies, say
from koala_chat.defaults import IMAGES_PATH
from koala_chat.providers.dialects import ApiKey
from koala_chat.sandbox import Reply, Sandbox
from server_fixtures import ServerThread, fetch

# --- the empty state -----------------------------------------------------------


def test_an_empty_chat_welcomes_and_a_suggested_prompt_sends_itself(
    page: Page, sandbox: Sandbox, koala_server: ServerThread
) -> None:
    open_chat(page, koala_server)
    expect(page.get_by_role("heading", level=2, name="Koala chat")).to_be_visible()
    expect(page.get_by_text("Ask anything")).to_be_visible()
    suggestions = page.get_by_role("list", name="Suggested prompts")
    expect(suggestions.get_by_role("button")).to_have_count(4)
    expect(page.get_by_role("log", name="Messages")).to_be_hidden()

    suggestions.get_by_role("button", name="Write a haiku about eucalyptus").click()
    expect(replies(page)).to_contain_text('You said: "Write a haiku about eucalyptus"')
    assert sandbox.requests[-1].json is not None
    assert sandbox.requests[-1].json["input"] == "Write a haiku about eucalyptus"
    expect(suggestions).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Write a haiku about eucalyptus"
    )

    # A new chat welcomes again; the old one keeps its messages.
    page.get_by_role("button", name="New chat").click()
    expect(suggestions).to_be_visible()
    expect(page.get_by_role("article")).to_have_count(0)


# --- a phone -------------------------------------------------------------------

#: For each visible child of the header: its top, bottom and right edge.
HEADER_ROW = """() => {
    const header = document.querySelector("header.toolbar");
    const boxes = [...header.children]
        .map((child) => child.getBoundingClientRect())
        .filter((box) => box.width > 0);
    const own = header.getBoundingClientRect();
    return {
        height: own.height,
        overflow: header.scrollWidth - header.clientWidth,
        centres: boxes.map((box) => (box.top + box.bottom) / 2),
        right: Math.max(...boxes.map((box) => box.right)),
    };
}"""


def test_on_a_phone_the_header_is_one_row_and_settings_open_as_a_sheet(
    page: Page, sandbox: Sandbox, koala_server: ServerThread
) -> None:
    page.set_viewport_size({"width": 390, "height": 760})
    open_chat(page, koala_server)
    say(page, "A question long enough to make a long title on a phone screen")
    expect(replies(page)).to_contain_text("You said")
    row = page.evaluate(HEADER_ROW)
    # One row: as tall as one control (2.5rem) and its padding, all children
    # centred on one line, nothing wider than the screen.
    assert row["height"] < 60, row
    assert max(row["centres"]) - min(row["centres"]) < 2, row
    assert row["overflow"] == 0, row
    assert row["right"] <= 390, row
    for name in ("Show conversations", "Settings"):
        expect(page.get_by_role("button", name=name, exact=True)).to_be_in_viewport()
    expect(page.get_by_label("Model", exact=True)).to_be_in_viewport()

    sheet = open_settings(page)
    box = sheet.bounding_box()
    assert box is not None
    # A sheet: the screen's width, at its bottom edge.
    assert box["width"] == 390
    assert abs(box["y"] + box["height"] - 760) < 1
    connection = sheet.get_by_role("group", name="Connection")
    expect(connection.get_by_role("radio")).to_have_count(3)
    for name, line in (
        ("Automatic", "remembers what works"),
        ("Classic", "the earlier turns beside it"),
        ("Chat page", "koala.sh's own chat page"),
    ):
        radio = connection.get_by_role("radio", name=name, exact=True)
        expect(radio).to_have_accessible_description(re.compile(re.escape(line)))
    expect(sheet.get_by_role("switch", name="Search the web")).not_to_be_checked()
    page.keyboard.press("Escape")
    expect(sheet).to_be_hidden()
    open_settings(page)
    close_settings(page)


# --- stillness -----------------------------------------------------------------

#: Records every layout shift from now on (Layout Instability API), including
#: those after input, which CLS itself would forgive.
WATCH_SHIFTS = """() => {
    window.shifts = [];
    window.shiftObserver = new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
            window.shifts.push({
                value: entry.value,
                nodes: entry.sources.map((s) => s.node?.id || s.node?.nodeName || "?"),
            });
        }
    });
    window.shiftObserver.observe({ type: "layout-shift" });
}"""

#: Every layout shift since the page loaded (the observer's buffered entries).
SHIFTS_SINCE_LOAD = """() => new Promise((resolve) => {
    const seen = [];
    const observer = new PerformanceObserver((list) => seen.push(...list.getEntries()));
    observer.observe({ type: "layout-shift", buffered: true });
    requestAnimationFrame(() => setTimeout(() => {
        seen.push(...observer.takeRecords());
        resolve(seen.map((entry) => ({
            value: entry.value,
            nodes: entry.sources.map((s) => s.node?.id || s.node?.className || "?"),
        })));
    }));
})"""

SHIFTS = """() => {
    window.shiftObserver.takeRecords().forEach((entry) => window.shifts.push({
        value: entry.value, nodes: entry.sources.map((s) => s.node?.id || "?"),
    }));
    return window.shifts;
}"""


def test_loading_and_a_reply_starting_and_ending_shift_no_layout(
    page: Page, sandbox: Sandbox, koala_server: ServerThread
) -> None:
    open_chat(page, koala_server)
    say(page, "First")
    expect(replies(page)).to_contain_text('You said: "First"')
    # Loading moves nothing either: the model picker has its width before
    # the models arrive, the conversation takes the welcome's place.
    for width in (1100, 390, 1100):
        page.set_viewport_size({"width": width, "height": 720})
        page.reload()
        expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")
        expect(replies(page)).to_contain_text('You said: "First"')
        assert page.evaluate(SHIFTS_SINCE_LOAD) == [], width
    slot = page.locator(".action-slot")
    composer = page.get_by_role("form", name="Send a message")
    before = (slot.bounding_box(), composer.bounding_box())
    page.evaluate(WATCH_SHIFTS)

    sandbox.push(Reply(values=["Koalas ", "sleep."], stall_at=1, done=True))
    say(page, "Tell me")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.get_by_role("button", name="Send")).to_be_hidden()
    assert sandbox.wait_stalled()
    expect(replies(page).last).to_contain_text("Koalas")
    # Stop took Send's place: the same box, and the composer did not move.
    assert (slot.bounding_box(), composer.bounding_box()) == before
    sandbox.release()
    expect(replies(page).last).to_contain_text("Koalas sleep.")
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    assert (slot.bounding_box(), composer.bounding_box()) == before
    shifts = page.evaluate(SHIFTS)
    # The goal is a CLS below 0.01; but a Stop button that pushed the slot
    # aside would score about 0.0002 on this screen, so nothing may move.
    assert sum(shift["value"] for shift in shifts) < 0.01, shifts
    assert shifts == []


# --- words ---------------------------------------------------------------------


def assert_sentences(text: str) -> None:
    """Assert that `text` is sentences: each capitalised, ended, said once."""
    parts = re.split(r"(?<=[.?!])\s+", text.strip())
    for part in parts:
        assert re.match(r"[A-Z]", part), (part, text)
        assert part[-1] in ".?!", (part, text)
    assert len({part.lower() for part in parts}) == len(parts), text


def test_errors_read_as_sentences_that_say_a_thing_once(
    page: Page, sandbox: Sandbox, start_server: Callable[..., ServerThread]
) -> None:
    # A port that was bound and let go: nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nowhere = {"api_endpoint": f"http://127.0.0.1:{port}/api/gpt/"}
    open_chat(page, start_server(provider_options=nowhere))
    say(page, "Anyone there?")
    alert = replies(page).get_by_role("alert")
    expect(alert).to_have_text(
        "The server cannot reach Koala. Check its network and proxy; its log says more."
    )

    open_chat(page, start_server())
    seen: list[str] = []
    for reply in (
        Reply(status=500, body=b"upstream broke"),
        Reply(status=429, headers={"Retry-After": "1"}, body=b"slow"),
        Reply(body=b'data: "Partial "\n\ndata: {broken\n\n'),
        Reply(status=403, body=b"not for you"),
    ):
        sandbox.push(reply)
        if seen:
            page.get_by_role("button", name="Regenerate").click()
        else:
            say(page, "Fail, please")
        expect(alert).to_have_count(1)
        expect(alert).not_to_have_text(seen[-1] if seen else "")
        seen.append(alert.inner_text())
    for text in seen:
        assert_sentences(text)
    assert seen[1] == "Koala is rate limiting us: try again in 1 second."
    assert seen[2].startswith("Koala answered with something that is not a chat")

    # The words the page builds from the server's JSON errors, shape by shape.
    made = page.evaluate(
        """async () => {
            const { explain } = await import("/static/api.js");
            const log = " (details in the server's log)";
            return [
                [502, {code: "upstream_unreachable",
                       message: "could not connect to the Koala API" + log}],
                [502, {code: "upstream_error",
                       message: "the Koala API answered 503 Service Unavailable"}],
                [504, {code: "upstream_timeout", message: "the Koala API did not"}],
                [400, {code: "invalid_request", message: "messages must be a list"}],
                [404, {code: "model_not_found", message: "the model 'x' is unknown"}],
                [403, {}],
                [500, {code: "internal_error", message: "internal server error"}],
                [200, {message: "the upstream stream failed"}],
                [200, {}],
            ].map(([status, error]) => explain(status, error, null).message);
        }"""
    )
    for text in made:
        assert_sentences(text)
    assert made[0] == (
        "The server cannot reach Koala. Check its network and proxy; its log says more."
    )
    assert made[3] == "The server refused the request: messages must be a list."
    assert made[5] == "The server refused the request: status 403."


# --- images --------------------------------------------------------------------


def test_a_server_with_the_upstream_key_draws_images_from_the_sandbox(
    page: Page, sandbox: Sandbox, start_server: Callable[..., ServerThread]
) -> None:
    server = start_server(provider_options={"api_key": ApiKey(sandbox.api_key)})
    policy = fetch(server.url + "/")[1]["Content-Security-Policy"]
    # Images only from this server's origin and from blob: URLs the page's
    # own script makes: never from the image host itself.
    assert "img-src 'self' blob:;" in policy
    page.goto(server.url + "/")
    expect(page.get_by_text("/image and a description make a picture")).to_be_visible()

    suggestions = page.get_by_role("list", name="Suggested prompts")
    expect(suggestions.get_by_role("button")).to_have_count(5)
    suggestions.get_by_role("button", name="/image a koala asleep").click()
    image = replies(page).get_by_role("img")
    expect(image).to_have_attribute(
        "alt", "Sandbox image 1 of 1: a koala asleep in a eucalyptus tree"
    )
    expect(image).to_have_js_property("naturalWidth", 16)  # the sandbox's PNG
    assert (image.get_attribute("src") or "").startswith("blob:")
    (upstream,) = [r for r in sandbox.requests if r.path == IMAGES_PATH]
    assert upstream.json is not None
    assert upstream.json["prompt"] == "a koala asleep in a eucalyptus tree"
    # The image turn is no chat: the next question goes without it.
    with page.expect_request("**/v1/chat/completions") as asked:
        say(page, "Hello")
    assert asked.value.post_data_json["messages"] == [
        {"role": "user", "content": "Hello"}
    ]
    expect(replies(page).last).to_contain_text('You said: "Hello"')

    # A reload keeps the turn and its alt text, not the image's bytes.
    page.reload()
    expect(replies(page).first).to_contain_text("The image is gone")
    expect(replies(page).first).to_contain_text("a koala asleep in a eucalyptus")
    expect(page.get_by_role("img")).to_have_count(0)


def test_without_the_upstream_key_there_is_no_image_mode(
    page: Page, sandbox: Sandbox, koala_server: ServerThread
) -> None:
    open_chat(page, koala_server)
    expect(page.get_by_text("Enter sends, Shift+Enter adds a line.")).to_be_visible()
    suggestions = page.get_by_role("list", name="Suggested prompts")
    expect(suggestions.get_by_role("button")).to_have_count(4)
    say(page, "/image a koala")
    expect(replies(page)).to_contain_text('You said: "/image a koala"')
    assert all(r.path != IMAGES_PATH for r in sandbox.requests)
    expect(page.get_by_role("img")).to_have_count(0)
