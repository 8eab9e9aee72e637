"""The HTTP helpers of the providers, one job per module.

- `proxies`: which proxies we support, and how each is applied exactly once
  (SOCKS in the connector, HTTP per request);
- `timeouts`: the time limits of one call, as one `aiohttp.ClientTimeout`;
- `translate`: where aiohttp's and aiohttp-socks' exceptions become ours;
- `mapping`: the context manager that does so around the transport, the one
  place our providers catch them;
- `status`: a reply's status becomes our error (`raise_for_status`).

Private: the public names (`raise_for_status`, `get_connector`) are exported by
`koala_chat` itself. Nothing here parses the event stream.
"""

from .proxies import get_connector, http_proxy, proxy_scheme
from .status import (
    is_cloudflare_challenge,
    parse_retry_after,
    raise_for_redirect,
    raise_for_status,
    read_excerpt,
    reply_scrubber,
    text_excerpt,
)
from .timeouts import Timeouts, remaining
from .translate import FOREIGN_ERRORS, safe_cause, translate_error, translate_errors

__all__ = [
    "FOREIGN_ERRORS",
    "Timeouts",
    "get_connector",
    "http_proxy",
    "is_cloudflare_challenge",
    "parse_retry_after",
    "proxy_scheme",
    "raise_for_redirect",
    "raise_for_status",
    "read_excerpt",
    "remaining",
    "reply_scrubber",
    "safe_cause",
    "text_excerpt",
    "translate_error",
    "translate_errors",
]
