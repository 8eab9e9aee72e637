"""Fixtures for tests of the chat page: headless Chromium driven by Playwright.

One browser serves a whole test module (starting it costs about a second);
each test gets a fresh context, so storage never leaks from one test to the
next. Debian's `chromium` is used as it is: Playwright's own browser builds
cannot be downloaded here. A missing browser or package fails the tests; it
never skips them.

The page is checked for what a person would not see: script errors, console
errors (a Content-Security-Policy violation is one) and native dialogs (the
page opens none, so one would mean text ran as script).

The helpers at the end do what a person does on the chat page: open it, ask,
and look at Koala's replies.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    expect,
    sync_playwright,
)

if TYPE_CHECKING:
    # Only a type: importing the plugin module here would load it before
    # pytest registers it (and rewrites its asserts).
    from server_fixtures import ServerThread

#: Where the screenshots of the page go (listed in .gitignore).
SCREENSHOTS = Path(__file__).parent / "screenshots"

#: How long one step of a browser test may wait (milliseconds).
STEP_TIMEOUT = 10_000

# Headless as root in a closed network: no sandbox (root), no GPU, and none of
# the background traffic that would otherwise try to reach Google's servers.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
)

_STATUS_LOGGED = "Failed to load resource: the server responded with a status of"


def chromium_path() -> str:
    """Return the path of the Chromium to drive, or fail the test."""
    path = os.environ.get("KOALA_CHROMIUM") or shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Chromium is missing: install Debian's package (apt-get install "
            "chromium), or set KOALA_CHROMIUM to a Chromium binary"
        )
    return path


@dataclass
class PageWatch:
    """What the page did that a test should never see."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(self, message: ConsoleMessage) -> None:
        # Chromium logs every error status it receives; tests script those.
        if message.type == "error" and not message.text.startswith(_STATUS_LOGGED):
            self.errors.append(message.text)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, shared by the tests of one module."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS), headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page_watch() -> PageWatch:
    """The dialogs and errors of the test's page."""
    return PageWatch()


@pytest.fixture
def page(browser: Browser, page_watch: PageWatch) -> Iterator[Page]:
    """A page in a fresh context (empty storage) that records its mishaps.

    At the end the test fails if the page raised, logged an error (a CSP
    violation is logged as one) or opened a native dialog.
    """
    context = browser.new_context(
        viewport={"width": 1100, "height": 720}, accept_downloads=True
    )
    context.set_default_timeout(STEP_TIMEOUT)
    try:
        opened = context.new_page()
        opened.on("dialog", page_watch.on_dialog)
        opened.on("pageerror", lambda error: page_watch.errors.append(str(error)))
        opened.on("console", page_watch.on_console)
        yield opened
    finally:
        context.close()
    assert page_watch.dialogs == []
    assert page_watch.errors == []


def open_chat(page: Page, server: ServerThread) -> None:
    """Open the chat page of `server` and wait until it lists the models."""
    page.goto(server.url + "/")
    expect(page.get_by_label("Model", exact=True)).to_have_value("gpt-4o-mini")


def say(page: Page, text: str) -> None:
    """Type `text` into the message box and send it with Enter."""
    prompt = page.get_by_role("textbox", name="Message", exact=True)
    prompt.fill(text)
    prompt.press("Enter")


def replies(page: Page) -> Locator:
    """Return Koala's messages on the page."""
    return page.get_by_role("article", name="Koala", exact=True)


def open_settings(page: Page) -> Locator:
    """Open the settings sheet with its button and return it."""
    page.get_by_role("button", name="Settings", exact=True).click()
    sheet = page.get_by_role("dialog", name="Settings")
    expect(sheet).to_be_visible()
    return sheet


def close_settings(page: Page) -> None:
    """Close the settings sheet with its button."""
    page.get_by_role("button", name="Close settings").click()
    expect(page.get_by_role("dialog", name="Settings")).to_be_hidden()
