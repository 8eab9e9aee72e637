"""The chat page against hostile text and storage, in Chromium.

A reply may be anything a model (or a proxy in front of it) sends; the
browser's storage may hold anything another version of the page, an
extension or a person wrote there; an imported file may be any file. None of
it may throw past the page: each message renders, or shows as its plain text;
what cannot be read is skipped or repaired; the models still load. The page
fixture fails a test on any console error or uncaught exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser import open_chat, replies, say
from koala_chat.sandbox import Reply, Sandbox
from koala_chat.server.webpage import static_files
from server_fixtures import ServerThread

#: How deep the renderer nests quotes (markdown.js, MAX_DEPTH).
MAX_DEPTH = 16
#: 20,000 nested quotes: one line the old renderer recursed on 20,000 times.
DEEP = ">" * 20_000 + " deep"
STORAGE = "koala-chat.conversations"
CURRENT = "koala-chat.current"


def stored(page: Page) -> list[dict[str, object]]:
    """Return the conversations the page keeps in localStorage."""
    text = page.evaluate(f"() => localStorage.getItem({STORAGE!r})")
    data = json.loads(text)
    assert isinstance(data, list)
    return data


def test_the_page_scripts_never_build_html_from_strings() -> None:
    scripts = {
        n: f.body.decode() for n, f in static_files().items() if n.endswith(".js")
    }
    assert {"app.js", "controller.js", "markdown.js", "store.js", "view.js"} <= set(
        scripts
    )
    for name, source in scripts.items():
        assert source.startswith("// @ts-check\n"), name
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert sink not in source, (name, sink)
        assert "eval(" not in source, name


def test_a_reply_20000_quotes_deep_streams_and_survives_garbage_storage(
    page: Page, sandbox: Sandbox, koala_server: ServerThread
) -> None:
    open_chat(page, koala_server)
    sandbox.push(Reply(values=[DEEP[:9_000], DEEP[9_000:], "\n\nafter"], done=True))
    say(page, "Go deep")
    reply = replies(page)
    expect(reply).to_contain_text("after")
    # Sixteen quotes, then the rest of the line as its letters.
    expect(reply.get_by_role("blockquote")).to_have_count(MAX_DEPTH)
    expect(reply).to_contain_text(">" * (20_000 - MAX_DEPTH) + " deep")
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()

    # Around the conversation, everything the page must not trip over.
    deep = stored(page)[0]
    garbage = [
        None,
        42,
        "a string",
        [],
        {"id": 7},
        {"id": ""},
        {**deep, "title": "A copy with the same id"},
        {
            "id": "bad-fields",
            "title": 12,
            "system": [],
            "model": {},
            "protocol": 5,
            "webSearch": "yes",
            "messages": {"0": 1},
            "updated": "never",
        },
        {
            "id": "mixed",
            "title": "Mixed bag",
            "updated": 1,
            "messages": [
                None,
                5,
                {"role": "system", "content": "not a turn"},
                {"role": "user", "content": 9},
                {"role": "user", "content": "kept question"},
                {"role": "assistant", "content": "", "pending": True},
            ],
        },
    ]
    page.evaluate(
        "([key, value]) => localStorage.setItem(key, value)",
        [STORAGE, json.dumps([deep, *garbage])],
    )
    page.reload()
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")
    expect(replies(page)).to_contain_text("after")
    expect(replies(page).get_by_role("blockquote")).to_have_count(MAX_DEPTH)
    sidebar = page.get_by_role("navigation", name="Saved conversations")
    expect(sidebar.get_by_role("button", name="Rename", exact=False)).to_have_count(3)
    expect(sidebar.get_by_role("button", name="Go deep", exact=True)).to_be_visible()
    expect(sidebar.get_by_role("button", name="New chat", exact=True)).to_be_visible()

    # Half a conversation is repaired: its readable turns stay, a reply that
    # was arriving at the reload is marked stopped and can be asked again.
    sidebar.get_by_role("button", name="Mixed bag", exact=True).click()
    expect(page.get_by_role("article", name="You")).to_have_text(["kept questionEdit"])
    expect(replies(page)).to_have_text("Stopped.Regenerate")
    sandbox.push(Reply(values=["Repaired."], done=True))
    page.get_by_role("button", name="Regenerate").click()
    expect(replies(page)).to_have_text("Repaired.Regenerate")
    assert [c["id"] for c in stored(page)][:2] == [deep["id"], "bad-fields"]


@pytest.mark.parametrize(
    ("conversations", "current"),
    [
        pytest.param("{not json", "nothing", id="invalid-json"),
        pytest.param("42", '{"id": 1}', id="a-number"),
        pytest.param('"a string"', "", id="a-string"),
        pytest.param('{"id": "x", "messages": []}', "x", id="an-object"),
        pytest.param("null", "null", id="null"),
        pytest.param("[" * 100_000 + "]" * 100_000, "[", id="deep-arrays"),
        pytest.param("x" * 1_000_000, "x" * 100_000, id="huge-string"),
    ],
)
def test_a_reload_over_unreadable_storage_starts_a_fresh_chat(
    page: Page, koala_server: ServerThread, conversations: str, current: str
) -> None:
    open_chat(page, koala_server)
    page.evaluate(
        "(items) => items.forEach(([key, value]) => localStorage.setItem(key, value))",
        [[STORAGE, conversations], [CURRENT, current]],
    )
    page.reload()
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    expect(page.get_by_role("article")).to_have_count(0)
    expect(page.get_by_role("alert")).to_have_count(0)
    # The fresh chat replaced what could not be read.
    assert [c["title"] for c in stored(page)] == ["New chat"]


#: A markdown module that fails on every text, as a renderer bug would.
FAILING_RENDERER = """
export const MAX_DEPTH = 16;
export function stableEnd() { return 0; }
export function renderMarkdown() {
  throw new RangeError("Maximum call stack size exceeded");
}
"""


def test_a_reply_the_renderer_fails_on_shows_as_plain_text(
    page: Page, sandbox: Sandbox, koala_server: ServerThread
) -> None:
    page.route(
        "**/static/markdown.js",
        lambda route: route.fulfill(
            body=FAILING_RENDERER, content_type="text/javascript"
        ),
    )
    open_chat(page, koala_server)
    text = "**bold** and <b>tags</b>\n\nsecond paragraph"
    sandbox.push(Reply(values=[text[:10], text[10:]], done=True))
    say(page, "Render this")
    reply = replies(page)
    expect(reply).to_have_text(text + "Regenerate")
    expect(reply.get_by_role("paragraph")).to_have_count(0)
    expect(reply.get_by_role("strong")).to_have_count(0)
    page.reload()
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")
    expect(replies(page)).to_have_text(text + "Regenerate")


def test_importing_a_bad_file_says_what_is_wrong_and_keeps_the_page(
    page: Page, sandbox: Sandbox, koala_server: ServerThread, tmp_path: Path
) -> None:
    open_chat(page, koala_server)
    say(page, "Before the imports")
    expect(replies(page)).to_contain_text('You said: "Before the imports"')
    bad = {
        "not-json.json": ("{oops", "not-json.json is not a JSON file."),
        "number.json": ("5", "number.json is not a list of messages."),
        "shape.json": ('{"messages": 5}', "shape.json is not a list of messages."),
        "role.json": (
            '[{"role": "robot", "content": "beep"}]',
            "role.json: message 1 needs a role (system, user or assistant).",
        ),
        "content.json": (
            '[{"role": "user", "content": "ok"}, {"role": "user", "content": 5}]',
            "content.json: message 2 needs text content.",
        ),
        "nested.json": (
            "[" * 50_000 + "]" * 50_000,
            "nested.json: message 1 needs a role",
        ),
    }
    upload = page.get_by_label("Import a conversation")
    for name, (content, said) in bad.items():
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        upload.set_input_files(path)
        expect(page.get_by_role("alert")).to_contain_text(said)
    expect(page.get_by_role("heading", level=1)).to_have_text("Before the imports")
    assert len(stored(page)) == 1

    # A file with the deep reply imports and renders like the streamed one.
    deep = tmp_path / "deep.json"
    messages = [
        {"role": "user", "content": "Deep one"},
        {"role": "assistant", "content": DEEP},
    ]
    deep.write_text(json.dumps(messages), encoding="utf-8")
    upload.set_input_files(deep)
    expect(page.get_by_role("heading", level=1)).to_have_text("Deep one")
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(replies(page).get_by_role("blockquote")).to_have_count(MAX_DEPTH)
    expect(replies(page)).to_contain_text(">" * (20_000 - MAX_DEPTH) + " deep")
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")


def test_a_full_storage_is_said_not_hidden(
    page: Page, koala_server: ServerThread
) -> None:
    open_chat(page, koala_server)
    # Fill localStorage to the browser's quota with something that is not ours.
    page.evaluate(
        """() => {
            let chunk = "x".repeat(1 << 20);
            for (let n = 0; chunk.length; n++) {
                try {
                    localStorage.setItem(`filler-${n}`, chunk);
                } catch {
                    chunk = chunk.slice(0, chunk.length >> 1);
                }
            }
        }"""
    )
    say(page, "Keep this")
    expect(replies(page)).to_contain_text('You said: "Keep this"')
    expect(page.get_by_role("alert")).to_contain_text("it will be lost on reload")


#: Markdown meant to be deep, wide or slow; each must render with bounded
#: nesting and keep every letter.
HOSTILE = {
    "quotes": DEEP,
    "spaced quotes": "> " * 20_000 + "x",
    "quote lines": "\n".join(">" * n + " line" for n in range(2_000)),
    "indented items": "\n".join("  " * n + "- item" for n in range(2_000)),
    "bullets in a line": "- " * 20_000 + "x",
    "numbers in a line": "1. " * 10_000 + "x",
    "quoted lists": "> - " * 10_000 + "x",
    "stars": "*" * 20_000 + "x" + "*" * 20_000,
    "bold and em": "**_" * 5_000 + "x" + "_**" * 5_000,
    "underscores": "_a" * 20_000,
    "brackets": "[" * 100_000 + "x",
    "open links": "[a](b" * 20_000,
    "backticks": "`" * 50_000 + "x",
    "a megabyte": "word " * 200_000,
    "many lines": "line\n" * 50_000,
}


def test_hostile_markdown_renders_shallow_and_keeps_its_letters(
    page: Page, koala_server: ServerThread
) -> None:
    page.goto(koala_server.url + "/")
    results = page.evaluate(
        """async (samples) => {
            const { renderMarkdown } = await import("/static/markdown.js");
            const letters = (text) => (text.match(/[a-z]/gi) ?? []).length;
            const out = {};
            for (const [name, text] of Object.entries(samples)) {
                const box = document.createElement("div");
                box.append(renderMarkdown(text));
                // The deepest element, walked without recursion.
                let deepest = 0;
                const stack = [[box, 0]];
                while (stack.length) {
                    const [node, depth] = stack.pop();
                    deepest = Math.max(deepest, depth);
                    for (const child of node.children) stack.push([child, depth + 1]);
                }
                out[name] = {
                    deepest,
                    kept: letters(box.textContent) === letters(text),
                };
            }
            return out;
        }""",
        HOSTILE,
    )
    for name, result in results.items():
        assert result["kept"], name
        # Sixteen quotes, a paragraph and its inline spans at most.
        assert result["deepest"] <= MAX_DEPTH + 4, (name, result)
    assert results["quotes"]["deepest"] == MAX_DEPTH + 1


#: Run before the page's scripts: both storages throw, as where site data is blocked.
BLOCKED_STORAGE = """
for (const name of ["localStorage", "sessionStorage"]) {
    Object.defineProperty(window, name, {
        get() { throw new DOMException("Access is denied", "SecurityError"); },
    });
}
"""


def test_a_browser_that_refuses_storage_still_chats_and_says_so(
    page: Page, sandbox: Sandbox, start_server: Callable[..., ServerThread]
) -> None:
    page.add_init_script(BLOCKED_STORAGE)
    server = start_server(api_key="sesame")
    page.goto(server.url + "/")
    dialog = page.get_by_role("dialog", name="API key")
    dialog.get_by_label("API key").fill("sesame")
    dialog.get_by_role("button", name="Use key").click()
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")
    expect(page.get_by_role("alert")).to_contain_text(
        "conversations are lost on reload"
    )
    say(page, "Hi")
    expect(replies(page)).to_contain_text('You said: "Hi"')
    # The key lasts for the page: the second request does not ask again.
    say(page, "Again")
    expect(replies(page).last).to_contain_text('You said: "Again"')
    expect(dialog).to_be_hidden()
    assert (
        page.evaluate(
            "() => { try { return localStorage.length; } catch { return -1; } }"
        )
        == -1
    )
