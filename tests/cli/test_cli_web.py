"""`koala chat --web`: the chat page served in this process, the browser opened."""

from __future__ import annotations

import json
import re

import pytest

from koala_chat._cli import main
from server_fixtures import stand_in_browser


# The in-process sandbox takes the dialect asked for, the api one with its key.
@pytest.mark.parametrize("dialect", [[], ["--protocol", "api"]])
def test_koala_chat_web_serves_the_page_and_opens_the_browser(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dialect: list[str],
) -> None:
    seen = stand_in_browser(monkeypatch)
    assert main(["chat", "--web", "--sandbox", *dialect]) == 0
    (status, _, html), (answered, _, body) = seen
    url = capsys.readouterr().err.split(" is at ")[1].split()[0]
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
    assert status == 200
    assert b'<script type="module" src="/static/app.js">' in html
    assert answered == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"].startswith(
        'You said: "Hi"'
    )


def test_koala_chat_web_takes_no_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--web", "--sandbox", "Hi"]) != 0
    assert "--web opens the chat page" in capsys.readouterr().err
