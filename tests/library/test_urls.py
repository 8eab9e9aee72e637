"""`koala_chat._urls`: endpoints checked whole, URLs redacted whatever their shape."""

from __future__ import annotations

import pytest

from koala_chat import UsageError
from koala_chat._urls import check_endpoint, redact_url, url_problem


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@host:1/p", "http://user:***@host:1/p"),
        ("http://token@host/p", "http://***@host/p"),
        ("http://host/p", "http://host/p"),
        ("http://user:p#w@host/", "http://***@host/"),
        ("http://user:p/w@host/", "http://***@host/"),
        ("http://user:p?w@host/", "http://***@host/"),
        ("http://user:p@w@host/", "http://user:***@host/"),
        ("http://user:pw@host:99999/", "http://user:***@host:99999/"),
        ("user:pw@host:8080", "user:***@host:8080"),
        ("socks5://u:pw@[::1/", "socks5://u:***@[::1/"),
        ("http://host/a@b", "http://***@b"),
        ("http://user:hunter2@proxy:8080", "http://user:***@proxy:8080"),
        ("socks5://u:p%40ss@[::1]:1080/", "socks5://u:***@[::1]:1080/"),
        ("http://proxy:8080", "http://proxy:8080"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_complete_url_has_no_problem() -> None:
    assert url_problem("http://user:pw@127.0.0.1:8000/api/gpt/") == ""
    assert check_endpoint("https://koala.sh/api/gpt/") == "https://koala.sh/api/gpt/"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://user:Xq72Zw9@127.0.0.1:99999/", "port"),
        ("http://user:Xq72Zw9@127.0.0.1:0/", "port"),
        ("http://user:Xq72Zw9@127.0.0.1:x/", "port"),
        ("http://user:Xq7#Zw9@127.0.0.1/", "'@' after the host"),
        ("http://user:Xq7/Zw9@127.0.0.1/", "'@' after the host"),
        ("http://user:Xq7?Zw9@127.0.0.1/", "'@' after the host"),
        ("http://user:Xq7\\Zw9@127.0.0.1/", "backslash"),
        ("http://user:Xq7 Zw9@127.0.0.1/", "white space"),
        ("http://user:Xq7\nZw9@127.0.0.1/", "white space"),
        ("http://user:Xq7\u00a0Zw9@127.0.0.1/", "white space"),
        ("http://user:Xq7\uff03Zw9@127.0.0.1/", "cannot be parsed"),
        ("http://user:Xq72Zw9@[::1/", "cannot be parsed"),
        ("http://user:Xq7\u0100Zw9@127.0.0.1/", "ISO-8859-1"),
        ("http://user:Xq72Zw9@/", "no host"),
        ("ftp://user:Xq72Zw9@host/", "scheme"),
    ],
)
def test_incomplete_endpoints_are_refused(url: str, why: str) -> None:
    with pytest.raises(UsageError, match="the API endpoint must be") as caught:
        check_endpoint(url)
    message = str(caught.value)
    assert why in message
    assert "Xq7" not in message
    assert "Zw9" not in message
