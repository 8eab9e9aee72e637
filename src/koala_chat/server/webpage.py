"""The chat page of `koala serve`: `/` and its static files, from the package.

    GET /                   the page: index.html with style.css inlined
    GET /static/{name}      its ES modules, stylesheet and icon

The files ship in `koala_chat/server/web/`; they are read and gzipped once,
when the first app is built, and served from memory. Only the names found
there are served, so no path from a request ever reaches the file system.

The stylesheet is put inside the page as it is served, so the page paints
after one round trip; the Content-Security-Policy allows exactly that style by
its SHA-256 hash. Scripts come only from files of this origin (no inline
script), requests go only to this origin, nothing is loaded from elsewhere.
The page talks to the server's public API only (`/v1/models`,
`/v1/chat/completions`, `/v1/images/generations`), so API keys and CORS
settings apply to it as to any other client.

Images: the page asks for them as bytes (`response_format: b64_json`), so
this server fetches them from the image host and the browser never does; the
page shows them from `blob:` URLs its own script makes of those bytes. So
`img-src` is `'self' blob:`: no other origin, not even the image host's (its
origin is not known in advance, and a page that loaded from it would tell it
the reader's address). A `blob:` URL belongs to the origin that made it, so
only this page's scripts can make one its images may show.

Responses carry an ETag and `Cache-Control: no-cache`: a browser keeps the
files and asks whether they changed (304), so an upgraded package is seen at
once.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from aiohttp import web

from ..messages import JSONValue
from .components import ERROR_REF, JSON_MEDIA_TYPE

__all__ = [
    "StaticFile",
    "add_web_routes",
    "content_security_policy",
    "openapi_paths",
    "static_files",
]

#: The tag of index.html that the served page replaces by the stylesheet.
STYLESHEET_LINK: Final = '<link rel="stylesheet" href="/static/style.css">'

_CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def content_security_policy(style_src: str = "'self'") -> str:
    """Return the policy of the page and its files, allowing `style_src` styles."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            f"style-src {style_src}",
            "img-src 'self' blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file of the page: its bytes, gzipped bytes, type, ETag and policy."""

    body: bytes
    gzipped: bytes
    content_type: str
    etag: str
    policy: str

    @classmethod
    def of(
        cls, body: bytes, content_type: str, policy: str | None = None
    ) -> StaticFile:
        """Return the file for `body`, compressed once (mtime 0: reproducible)."""
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(
            body,
            gzip.compress(body, 9, mtime=0),
            content_type,
            f'"{digest}"',
            policy or content_security_policy(),
        )


@functools.cache
def static_files() -> dict[str, StaticFile]:
    """Return the page's files by name, read from the package once.

    "index.html" is the page as served, with the stylesheet inside it.
    """
    folder = resources.files(__package__).joinpath("web")
    files = {}
    for entry in folder.iterdir():
        kind = _CONTENT_TYPES.get("." + entry.name.rpartition(".")[2])
        if entry.is_file() and kind is not None:
            files[entry.name] = StaticFile.of(entry.read_bytes(), kind)
    files["index.html"] = _with_style(files["index.html"], files["style.css"])
    return files


def _with_style(page: StaticFile, style: StaticFile) -> StaticFile:
    """Return `page` with `style` inlined, and a policy that allows it alone."""
    html = page.body.decode()
    if STYLESHEET_LINK not in html or b"</" in style.body:
        raise RuntimeError("web/index.html must link web/style.css as shipped")
    inline = html.replace(STYLESHEET_LINK, f"<style>{style.body.decode()}</style>")
    digest = base64.b64encode(hashlib.sha256(style.body).digest()).decode()
    return StaticFile.of(
        inline.encode(),
        page.content_type,
        content_security_policy(f"'sha256-{digest}'"),
    )


def add_web_routes(app: web.Application) -> None:
    """Add `/` and `/static/{name}` to `app` (no API key needed for them)."""
    files = static_files()
    app.router.add_get("/", functools.partial(_serve, files["index.html"]))
    app.router.add_get("/static/{name}", functools.partial(_serve_static, files))


async def _serve_static(
    files: dict[str, StaticFile], request: web.Request
) -> web.Response:
    name = request.match_info["name"]
    found = files.get(name)
    if found is None or name == "index.html":
        raise web.HTTPNotFound()
    return await _serve(found, request)


async def _serve(file: StaticFile, request: web.Request) -> web.Response:
    headers = {
        "Content-Security-Policy": file.policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
        "ETag": file.etag,
        "Vary": "Accept-Encoding",
    }
    if file.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = file.body
    if _accepts_gzip(request.headers.get("Accept-Encoding", "")):
        body = file.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = file.content_type
    return web.Response(body=body, headers=headers)


def openapi_paths() -> dict[str, JSONValue]:
    """Return the OpenAPI path items of the page's routes (no key needed)."""
    not_found: JSONValue = {
        "description": "No such file (code not_found).",
        "content": {JSON_MEDIA_TYPE: {"schema": ERROR_REF}},
    }
    unchanged: JSONValue = {"description": "The copy the client has is current."}
    text = {"schema": {"type": "string"}}
    return {
        "/": {
            "get": {
                "operationId": "chatPage",
                "summary": "The chat page (HTML; it uses the /v1 routes)",
                "security": [],
                "responses": {
                    "200": {"description": "The page.", "content": {"text/html": text}},
                    "304": unchanged,
                },
            }
        },
        "/static/{name}": {
            "get": {
                "operationId": "chatPageFile",
                "summary": "A file of the chat page: an ES module or its icon",
                "security": [],
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "text/javascript": text,
                            "text/css": text,
                            "image/svg+xml": text,
                        },
                    },
                    "304": unchanged,
                    "404": not_found,
                },
            }
        },
    }


def _accepts_gzip(accept_encoding: str) -> bool:
    """Tell whether an Accept-Encoding header allows gzip (RFC 9110, 12.5.3)."""
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        if name.strip().lower() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=").strip() if params else "1"
            try:
                return float(quality) > 0
            except ValueError:
                return True
    return False
