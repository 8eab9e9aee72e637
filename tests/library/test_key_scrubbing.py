"""The upstream key never comes back out of an upstream that echoes it.

`KOALA_API_KEY` goes upstream only as `Authorization: Bearer <key>` (the api
dialect). `EchoUpstream` is the adversary: a raw HTTP server on 127.0.0.1 that
answers each request with what a test scripts from the request's own
`Authorization` header, spelled as some framework might quote it (`Spelling`:
letter case, JSON and percent escapes, HTML references, base64 at each
alignment, a `Basic` credential), and placed wherever a reply can hold text
(`Case`: a 200 page or JSON, a redirect's `Location` and body, a 4xx or 5xx
body, reason phrase and headers, an event's data, a reply head or chunk that
aiohttp's parser refuses and quotes).

The properties: the key, in any of those spellings, never reaches a client of
`koala serve` (the openai SDK), its log, the error the library raises (its str,
repr, args, pickle and chain), nor the command line's error line.
`revealed` decodes what came out every way the spellings encode before it
looks for the key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import html
import itertools
import json
import logging
import pathlib
import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote, unquote_plus

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hardening import collect
from koala_chat import KoalaError
from koala_chat._cli import main
from koala_chat._http.status import text_excerpt
from koala_chat._secrets import MASK, Scrubber
from koala_chat.providers.dialects import ApiKey
from koala_chat.server.logtext import loggable
from server_fixtures import ServerThread, ThreadedServer, stand_in_browser

#: The key of the servers in these tests: every character class a key may hold.
KEY = "Sk-Koala_Echo.Key~4711/xy+z="
HI: list[openai.types.chat.ChatCompletionMessageParam] = [
    {"role": "user", "content": "Hi"}
]
_TIMEOUT = 10.0

# --- the spellings, and the decoder that undoes them ---------------------------

KINDS = ("as is", "json", "percent", "form", "html", "base64", "base64url", "hex")


@dataclass(frozen=True)
class Spelling:
    """One way an upstream may quote text: `kind`, then its parameters.

    `case` changes the letter case first; `mask` (cycled) says which
    characters an escaping kind escapes; `upper` the case of hex digits;
    `pad` the bytes before the text in base64 (so its alignment); `basic`
    quotes the token as a `Basic` credential instead.
    """

    kind: str
    case: str = "as is"
    mask: tuple[bool, ...] = (True,)
    upper: bool = False
    pad: bytes = b""
    basic: bool = False

    def __call__(self, authorization: str) -> str:
        if self.basic:
            token = authorization.partition(" ")[2]
            return "Basic " + _b64(b"user:" + token.encode(), urlsafe=False)
        text = {"lower": str.lower, "upper": str.upper}.get(self.case, str)(
            authorization
        )
        # What the encoding must escape is escaped; the rest as `mask` says.
        must = _MUST_ESCAPE.get(self.kind, "")
        masked = [
            (c, m or c in must or not c.isascii())
            for c, m in zip(text, itertools.cycle(self.mask), strict=False)
        ]
        if self.kind == "json":
            return "".join(
                f"\\u{self._hex(ord(c), 4)}" if m else _JSON_ESCAPES.get(c, c)
                for c, m in masked
            )
        if self.kind == "percent":
            return "".join(
                "".join(f"%{self._hex(b, 2)}" for b in c.encode()) if m else c
                for c, m in masked
            )
        if self.kind == "form":
            return re.sub("%..", lambda m: self._case(m[0]), quote_plus(text))
        if self.kind == "html":
            return "".join(
                (f"&#x{self._hex(ord(c))};" if self.upper else f"&#{ord(c)};")
                if m
                else c
                for c, m in masked
            )
        if self.kind in ("base64", "base64url"):
            data = self.pad + text.encode() + b"!"
            return _b64(data, urlsafe=self.kind == "base64url")
        if self.kind == "hex":
            return self._case(text.encode().hex())
        return text

    def _hex(self, number: int, width: int = 1) -> str:
        return self._case(f"{number:0{width}x}")

    def _case(self, digits: str) -> str:
        return digits.upper() if self.upper else digits.lower()


_MUST_ESCAPE = {"json": "", "percent": "%\\+ ", "html": "&<>\"'"}
_JSON_ESCAPES = {"/": "\\/", '"': '\\"', "\\": "\\\\"}


def _b64(data: bytes, *, urlsafe: bool) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(data).decode()


spellings = st.builds(
    Spelling,
    kind=st.sampled_from(KINDS),
    case=st.sampled_from(("as is", "lower", "upper")),
    mask=st.lists(st.booleans(), min_size=1, max_size=12).map(tuple),
    upper=st.booleans(),
    pad=st.binary(max_size=2),
    basic=st.integers(0, 5).map(lambda n: n == 0),
)

_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", re.DOTALL)


def _unescape(text: str) -> str:
    """Undo one level of JSON (or Python) backslash escapes."""
    return _ESCAPE.sub(
        lambda m: chr(int(m[1][1:], 16)) if len(m[1]) > 1 else m[1], text
    )


_DECODERS: tuple[Callable[[str], str], ...] = (
    _unescape,
    unquote,
    unquote_plus,
    html.unescape,
)
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{16,}")


def revealed(text: str, key: str) -> bool:
    """Tell whether `text` shows `key` once decoded in any way `Spelling` encodes.

    Each sequence of up to three decoders (backslash escapes, percent, HTML),
    then the base64 and hex runs of each result at every alignment; the key
    whole, or its start (at least 8 characters) cut off by an ellipsis.
    """
    views = {text}
    for _ in range(3):
        views |= {decode(view) for view in views for decode in _DECODERS}
    wanted = {form.encode() for form in (key, key.lower(), key.upper())}
    # A key an excerpt cut short: its start before an ellipsis.
    start = re.escape(key[: max(8, len(key) // 2)].casefold())
    cut = re.compile(rf"{start}[^\s'\"]{{0,8}}(?:\.\.\.|…)")
    for view in views:
        if key.casefold() in view.casefold() or cut.search(view.casefold()):
            return True
        for run in _BASE64_RUN.findall(view) + _HEX_RUN.findall(view):
            if any(form in data for data in _decodings(run) for form in wanted):
                return True
    return False


def _decodings(run: str) -> Iterator[bytes]:
    for start in range(4):
        part = run[start:]
        part = part[: len(part) - 1] if len(part) % 4 == 1 else part
        part += "=" * (-len(part) % 4)
        for alt in (b"+/", b"-_"):
            with contextlib.suppress(binascii.Error, ValueError):
                yield base64.b64decode(part, altchars=alt)
    for start in range(2):
        part = run[start:]
        with contextlib.suppress(ValueError):
            yield bytes.fromhex(part[: len(part) // 2 * 2])


# --- the scrubber on its own ---------------------------------------------------

keys = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=40
)
# Text around a planted key that cannot spell a key by itself.
fillers = st.text(st.sampled_from(" \n<>{}:;,é!ü"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(key=keys, spelling=spellings, before=fillers, after=fillers)
def test_the_scrubber_masks_a_key_in_every_spelling(
    key: str, spelling: Spelling, before: str, after: str
) -> None:
    planted = before + spelling(f"Bearer {key}") + after
    assert revealed(planted, key)  # the decoder finds what was planted
    assert not revealed(Scrubber([key])(planted), key)
    scrub = Scrubber.for_headers({"Authorization": f"Bearer {key}"})
    assert not revealed(scrub(planted), key)


@settings(max_examples=100, deadline=None)
@given(key=keys, spelling=spellings, at=st.integers(0, 260))
def test_an_excerpt_cut_inside_a_key_shows_no_part_of_it(
    key: str, spelling: Spelling, at: int
) -> None:
    body = "é" * at + spelling(key) + "ü" * 300
    excerpt = text_excerpt(body, scrub=Scrubber([key]))
    assert len(excerpt) <= 200
    assert not revealed(excerpt, key)
    if spelling.kind == "as is" and not spelling.basic:
        assert key[:4].casefold() not in excerpt.casefold()


def test_a_short_secret_is_masked_only_as_a_word() -> None:
    scrub = Scrubber(["p"], words=True)
    assert scrub("Port p and P") == f"Port {MASK} and P"


def test_a_credential_after_its_scheme_is_masked_whatever_its_spelling() -> None:
    scrub = Scrubber.for_headers({"Authorization": "Bearer sk-1234567890"})
    assert scrub("Authorization: Bearer zzz-unknown") == f"Authorization: {MASK}"
    assert scrub("got bearer rot13-fx-1234567890") == f"got bearer {MASK}"


# --- the echo upstream ---------------------------------------------------------


def http_reply(
    status: int, reason: str, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    """Return a whole HTTP/1.1 reply, its length set and the connection closed."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class EchoUpstream(ThreadedServer):
    """A raw HTTP server on 127.0.0.1 that answers `reply(authorization)`.

    It runs on its own thread and event loop (koala serve and the openai SDK
    block the test's thread), reads one request per connection and closes it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reply: Callable[[str], bytes] = lambda auth: http_reply(
            500, "Echo", [], auth.encode()
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/gpt/"

    async def serve(self, stop: asyncio.Event, started: Callable[[int], None]) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        async with server:
            started(server.sockets[0].getsockname()[1])
            await stop.wait()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _TIMEOUT)
            fields = dict(
                line.split(": ", 1)
                for line in head.decode().split("\r\n")[1:]
                if ": " in line
            )
            found = {name.lower(): value for name, value in fields.items()}
            length = int(found.get("content-length", "0"))
            await asyncio.wait_for(reader.readexactly(length), _TIMEOUT)
            writer.write(self.reply(found.get("authorization", "")))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client left: nothing to answer
        finally:
            writer.close()


@pytest.fixture
def echo() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream()
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


# --- where a reply can quote the key -------------------------------------------

PLACES = (
    "200 page",
    "200 body",
    "200 content type",
    "redirect",
    "4xx",
    "5xx",
    "event data",
    "mid-stream event",
    "cut event",
    "bad status line",
    "bad header",
    "bad header value",
    "bad content length",
    "bad chunk",
)
CONTENT_TYPES = (
    "text/html",
    "application/json",
    "text/plain",
    "application/xml",
    "application/octet-stream",
    "application/problem+json",
)


@dataclass(frozen=True)
class Case:
    """A reply that quotes the request's `Authorization` as `spelling` at `place`."""

    place: str
    spelling: Spelling
    status: int
    content_type: str
    padding: int

    def __call__(self, authorization: str) -> bytes:
        said = self.spelling(authorization)
        body = self._body(said)
        if self.place == "200 page":
            return http_reply(200, "OK", [("Content-Type", "text/html")], body)
        if self.place == "200 body":
            return http_reply(200, "OK", [("Content-Type", self.content_type)], body)
        if self.place == "200 content type":
            kind = f"application/x-{said.replace(' ', '-')}"
            return http_reply(200, "OK", [("Content-Type", kind)], body)
        if self.place == "redirect":
            headers = [("Location", f"http://u.invalid/next?auth={said}")]
            return http_reply(self.status, said, headers, body)
        if self.place in ("4xx", "5xx"):
            headers = [
                ("Content-Type", self.content_type),
                ("X-Request-Id", said),
                ("Retry-After", "1"),
            ]
            return http_reply(self.status, said, headers, body)
        stream = [("Content-Type", "text/event-stream")]
        if self.place == "event data":
            return http_reply(200, "OK", stream, f"data: {said}\n\n".encode())
        if self.place == "mid-stream event":
            events = f'data: "Hi"\n\ndata: {said}\n\n'.encode()
            return http_reply(200, "OK", stream, events)
        if self.place == "cut event":
            cut = 'data: {"output": ' + json.dumps(said)[:-1]
            return http_reply(200, "OK", stream, cut.encode())
        bad_heads = {
            "bad status line": f"HTTP/1.1 {said}\r\n",
            "bad header": f"HTTP/1.1 200 OK\r\nX-Echo {said}\r\n",
            "bad header value": f"HTTP/1.1 200 OK\r\nX-Echo: {said}\x7f\x00\r\n",
            "bad content length": f"HTTP/1.1 200 OK\r\nContent-Length: {said}\r\n",
        }
        if self.place in bad_heads:
            return (bad_heads[self.place] + "\r\n").encode() + body
        # "bad chunk": a chunk-size line that is the key.
        return (
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{said}\r\n"
        ).encode()

    def _body(self, said: str) -> bytes:
        lead = "é" * self.padding
        if "json" in self.content_type:
            return json.dumps(
                {"error": {"message": lead, "headers": {"authorization": said}}}
            ).encode()
        if self.content_type == "text/html" or self.place == "200 page":
            return (
                f"<html><head><title>{lead}{said}</title></head>"
                f"<body><p>{said}</p></body></html>"
            ).encode()
        return f"{lead}you sent {said}".encode()


@st.composite
def cases(draw: st.DrawFn) -> Case:
    place = draw(st.sampled_from(PLACES))
    statuses = {
        "redirect": (301, 302, 303, 307, 308),
        "4xx": (400, 401, 402, 403, 404, 418, 422, 429),
        "5xx": (500, 502, 503, 504),
    }.get(place, (200,))
    return Case(
        place=place,
        spelling=draw(spellings),
        status=draw(st.sampled_from(statuses)),
        content_type=draw(st.sampled_from(CONTENT_TYPES)),
        padding=draw(st.sampled_from((0, 0, 150, 190, 198))),
    )


def exception_texts(error: BaseException) -> list[str]:
    """Return what may be printed of `error` and of each exception it chains."""
    texts: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        texts += [str(link), repr(link), repr(link.args), repr(vars(link))]
        pending += [link.__cause__, link.__context__]
    return texts


# --- the library --------------------------------------------------------------


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(key=keys.map(lambda key: f"sk-{key}"), case=cases())
def test_the_library_s_error_never_holds_the_key(
    echo: EchoUpstream, key: str, case: Case
) -> None:
    echo.reply = case
    with pytest.raises(KoalaError) as caught:
        asyncio.run(
            collect(api_endpoint=echo.url, protocol="api", api_key=key, max_retries=0)
        )
    error = caught.value
    copy = pickle.loads(pickle.dumps(error))
    texts = [*exception_texts(error), str(copy), repr(copy.args)]
    texts.append(pickle.dumps(error).decode("latin-1"))
    assert not any(revealed(text, key) for text in texts), (case, error)
    assert error.key_sent
    assert copy.key_sent


# --- koala serve --------------------------------------------------------------


@pytest.fixture
def keyed_server(
    start_server: Callable[..., ServerThread], echo: EchoUpstream
) -> ServerThread:
    """`koala serve --protocol api` with KEY, in front of the echo upstream."""
    return start_server(
        provider_options={
            "api_endpoint": echo.url,
            "protocol": "api",
            "api_key": ApiKey(KEY),
        }
    )


def client_view(server: ServerThread, *, stream: bool) -> str:
    """Return everything a client of `server` gets for one chat completion."""
    with openai.OpenAI(
        base_url=server.base_url, api_key="client", max_retries=0, timeout=_TIMEOUT
    ) as client:
        try:
            if stream:
                chunks = client.chat.completions.create(
                    model="", messages=HI, stream=True
                )
                return "".join(repr(chunk) for chunk in chunks)
            return repr(client.chat.completions.create(model="", messages=HI))
        except openai.APIStatusError as exc:
            response = exc.response
            return f"{exc} {exc.body!r} {response.text} {dict(response.headers)!r}"
        except openai.APIError as exc:
            return f"{exc} {exc.body!r}"


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=cases(), stream=st.booleans())
def test_koala_serve_never_quotes_the_key(
    keyed_server: ServerThread,
    echo: EchoUpstream,
    caplog: pytest.LogCaptureFixture,
    case: Case,
    stream: bool,
) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    echo.reply = case
    seen = client_view(keyed_server, stream=stream)
    assert "Koala API" in seen, seen  # a failure, told in our words
    assert not revealed(seen, KEY), (case, seen)
    logged = "\n".join(loggable(r.getMessage()) for r in caplog.records)
    assert "upstream failed" in logged
    assert not revealed(logged, KEY), (case, logged)


REVIEWED = {
    "302 body": Case("redirect", Spelling("as is"), 302, "text/plain", 0),
    "200 JSON": Case("200 body", Spelling("as is"), 200, "application/json", 0),
    "200 HTML": Case("200 page", Spelling("as is"), 200, "text/html", 0),
    "400 lower-cased": Case("4xx", Spelling("as is", case="lower"), 400, "x/y", 0),
    "500 JSON-escaped": Case(
        "5xx", Spelling("json", mask=(False, False, False, True)), 500, "x/y", 0
    ),
}


@pytest.mark.parametrize("case", REVIEWED.values(), ids=REVIEWED.keys())
def test_the_reviewed_leaks_are_closed(
    keyed_server: ServerThread,
    echo: EchoUpstream,
    caplog: pytest.LogCaptureFixture,
    case: Case,
) -> None:
    caplog.set_level(logging.WARNING)
    echo.reply = case
    seen = client_view(keyed_server, stream=False)
    assert "(details in the server's log)" in seen
    assert not revealed(seen, KEY)
    # The log keeps the excerpt, scrubbed: the key's place is marked.
    assert MASK in caplog.text
    assert not revealed(caplog.text, KEY)


def test_a_client_reads_the_status_and_its_meaning(
    keyed_server: ServerThread, echo: EchoUpstream
) -> None:
    echo.reply = REVIEWED["500 JSON-escaped"]
    with (
        openai.OpenAI(
            base_url=keyed_server.base_url, api_key="c", max_retries=0
        ) as client,
        pytest.raises(openai.APIStatusError) as caught,
    ):
        client.chat.completions.create(model="", messages=HI)
    assert caught.value.status_code == 502
    assert caught.value.message.endswith(
        " - the Koala API answered 500 Internal Server Error: an error on its side "
        "(details in the server's log)"
    )


# --- the command line ---------------------------------------------------------


@pytest.mark.parametrize("source", ["KOALA_API_KEY", "--api-key-file"])
@pytest.mark.parametrize("debug", [[], ["--debug"]])
@pytest.mark.parametrize("case", REVIEWED.values(), ids=REVIEWED.keys())
def test_koala_chat_s_error_line_never_shows_the_key(
    echo: EchoUpstream,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
    case: Case,
    debug: list[str],
    source: str,
) -> None:
    key_file: list[str] = []
    if source == "KOALA_API_KEY":
        monkeypatch.setenv("KOALA_API_KEY", KEY)
    else:
        (tmp_path / "key").write_text(KEY + "\n", encoding="utf-8")
        key_file = ["--api-key-file", str(tmp_path / "key")]
    echo.reply = case
    argv = ["chat", *debug, *key_file, "--protocol", "api"]
    argv += ["--endpoint", echo.url, "Hi"]
    assert main(argv) != 0
    out, err = capsys.readouterr()
    assert "koala: error:" in err
    assert not revealed(out + err, KEY), err


def test_koala_chat_web_never_shows_the_key(
    echo: EchoUpstream,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("KOALA_API_KEY", KEY)
    echo.reply = REVIEWED["400 lower-cased"]
    seen = stand_in_browser(monkeypatch, load_page=False)
    caplog.set_level(logging.WARNING)
    argv = ["chat", "--web", "--protocol", "api", "--endpoint", echo.url]
    assert main(argv) == 0
    [(status, _, body)] = seen
    assert status == 502
    message = json.loads(body)["error"]["message"]
    assert message.startswith("the Koala API answered 400 Bad Request")
    printed = capsys.readouterr().err + caplog.text
    assert "upstream failed" in caplog.text
    assert not revealed(body.decode() + printed, KEY)


@pytest.mark.parametrize(
    "key", ["000000<>", "sk-<b>live</b>-1234", "sk live 1234 5678"]
)
def test_a_key_that_markup_or_spaces_would_split_is_masked_whole(key: str) -> None:
    excerpt = text_excerpt(f"<p>echo: {key} ü</p>", scrub=Scrubber([key]))
    assert not revealed(excerpt, key)
    assert key.split("<")[0].split(" ")[0][:4] not in excerpt


def test_a_key_cut_inside_an_html_reference_is_masked_with_the_piece() -> None:
    # An excerpt cut `&#101;` to `&#1`: the piece still decodes, to U+0001.
    spelled = "".join(f"&#{ord(c)};" for c in KEY.lower()[:16]) + "&#1..."
    scrubbed = Scrubber([KEY])(f"event data is not JSON: '{spelled}'")
    assert scrubbed == "event data is not JSON: '***...'"
