"""Every default of the library, the command line and the servers, stated once.

Standard library only, so that the command line can show these in `--help`
without importing the HTTP stack. Modules that use a default import it from here;
none repeats it.
"""

from __future__ import annotations

from typing import Final, Literal, TypeAlias, get_args

# The provider ---------------------------------------------------------------

#: The environment variable that points the provider at another endpoint.
ENDPOINT_VARIABLE: Final = "KOALA_API_ENDPOINT"
#: The environment variable that chooses the dialect (docs/protocol.md,
#: "Choosing a dialect"): history, messages, api or auto.
PROTOCOL_VARIABLE: Final = "KOALA_PROTOCOL"
#: The environment variable that holds the key of koala.sh's official API (the
#: upstream key; `koala serve`'s own key for its clients is
#: SERVER_API_KEY_VARIABLE).
API_KEY_VARIABLE: Final = "KOALA_API_KEY"
# The dialect names, stated here once (docs/protocol.md, the table at the top);
# every other spelling is derived from these types.
Dialect: TypeAlias = Literal["history", "messages", "api"]
"""A way of talking to the endpoint."""
Protocol: TypeAlias = Literal["auto", Dialect]
"""A dialect, or `auto`: find the one the endpoint speaks ("Choosing a dialect")."""
SandboxProtocol: TypeAlias = Literal["any", Dialect]
"""What the sandbox accepts: one dialect, or `any` of them."""
#: The dialects, in the order `auto` and `koala check --all` try them.
DIALECT_NAMES: Final[tuple[Dialect, ...]] = get_args(Dialect)
#: The values of the `protocol` setting: `auto`, which negotiates, and the dialects.
PROTOCOLS: Final[tuple[Protocol, ...]] = get_args(Protocol)
#: Where the Koala chat API answers (docs/protocol.md, "Request").
API_ENDPOINT: Final = "https://koala.sh/api/gpt/"
#: Seconds to open the connection (through the proxy, if any).
CONNECT_TIMEOUT: Final = 10.0
#: Seconds of silence allowed between two chunks of the reply.
IDLE_TIMEOUT: Final = 60.0
#: Seconds for the whole request, retries included.
TOTAL_TIMEOUT: Final = 300.0
#: Further attempts after a retryable failure, before any value was yielded.
MAX_RETRIES: Final = 2
#: Seconds of the first backoff step (doubled each attempt, with jitter).
RETRY_BACKOFF: Final = 0.5
#: The longest `Retry-After` honoured, in seconds; a longer one fails at once.
MAX_RETRY_WAIT: Final = 30.0
#: The largest single event accepted, in characters.
MAX_EVENT_SIZE: Final = 16 * 1024 * 1024

# KoalaImages (docs/images.md) ----------------------------------------------

#: The environment variable that points the images call at another endpoint;
#: without it, the chat endpoint's origin with IMAGES_PATH.
IMAGES_ENDPOINT_VARIABLE: Final = "KOALA_IMAGES_ENDPOINT"
#: The path of the image API on the chat endpoint's origin.
IMAGES_PATH: Final = "/api/image-generation/"
#: Where KoalaImages answers (docs/images.md, "Request").
IMAGES_ENDPOINT: Final = "https://koala.sh" + IMAGES_PATH
ImageStyle: TypeAlias = Literal[
    "photo", "illustration", "watercolor", "fantasy", "anime", "3d", "isometric", "none"
]
"""A style of KoalaImages; `photo` is the service's default."""
ImageQuality: TypeAlias = Literal["fast", "medium", "high"]
"""A quality of gpt-image-2, the only model that takes one."""
#: The styles, the service's default first.
IMAGE_STYLES: Final[tuple[ImageStyle, ...]] = get_args(ImageStyle)
IMAGE_QUALITIES: Final[tuple[ImageQuality, ...]] = get_args(ImageQuality)
#: The models, the service's default first; the last two are deprecated.
IMAGE_MODELS: Final = (
    "gpt-image-2",
    "ideogram-3.0",
    "nano-banana-2",
    "standard",
    "premium",
)
#: What a size looks like, `WIDTHxHEIGHT` (a regular expression).
IMAGE_SIZE_PATTERN: Final = r"[1-9][0-9]{1,4}x[1-9][0-9]{1,4}"
#: The one model that takes a quality.
IMAGE_QUALITY_MODEL: Final = "gpt-image-2"
#: The most images one request may ask for (`numImages`).
IMAGES_MAX_COUNT: Final = 4
#: Seconds the fetch of one image may take: the service answers its URL before
#: the image is finished, and the fetch waits for it.
IMAGE_FETCH_TIMEOUT: Final = 120.0
#: The largest image fetched, in bytes.
IMAGE_MAX_BYTES: Final = 32 * 1024 * 1024
#: Images fetched at once per process by `koala serve` (`b64_json`) and
#: `koala image`.
IMAGE_FETCHES: Final = 8

# koala serve ----------------------------------------------------------------

#: The environment variable that holds the server's own API key.
SERVER_API_KEY_VARIABLE: Final = "KOALA_SERVER_API_KEY"
SERVER_HOST: Final = "127.0.0.1"
SERVER_PORT: Final = 1337
#: The largest request body accepted (a long conversation fits easily).
SERVER_MAX_BODY: Final = 1024 * 1024
#: Completions in progress at once per process (streaming or not); more get 429.
SERVER_MAX_STREAMS: Final = 1000
#: Seconds open streams may go on after Ctrl-C or SIGTERM.
SERVER_GRACE: Final = 10.0
SERVER_WORKERS: Final = 1
#: Seconds a client has to send a request's head; also the longest idle keep-alive.
SERVER_HEAD_TIMEOUT: Final = 10.0
#: Seconds a client has to send a request's body once its head is in; then 408.
SERVER_BODY_TIMEOUT: Final = 30.0
#: Open connections per process; one more gets 503 and is closed.
SERVER_MAX_CONNECTIONS: Final = 1000
#: `Retry-After` seconds sent for an upstream rate limit that named no time.
SERVER_RETRY_AFTER: Final = 10
#: The dialects a client of `koala serve` may choose with the body's
#: `protocol`: the free ones; `api` spends the operator's key.
SERVER_CLIENT_PROTOCOLS: Final = ("auto", "history", "messages")

# JSON Schemas of requests (JSON mode, tools) ---------------------------------

#: The largest JSON Schema of `response_format`, or of one tool's parameters, in
#: bytes of its compact JSON text.
SCHEMA_MAX_BYTES: Final = 128 * 1024
#: The deepest nesting of objects and arrays in one schema. The validator
#: recurses once per level, so this keeps it far from Python's recursion limit.
SCHEMA_MAX_DEPTH: Final = 64
#: The most subschemas in one schema, and in all tools' parameters together:
#: checking each against its draft's metaschema takes about 0.2 ms.
SCHEMA_MAX_SUBSCHEMAS: Final = 5_000
#: The most subschemas one schema may stand for once its `$ref`s are expanded
#: (a few refs that each use the previous twice stand for millions).
SCHEMA_MAX_EXPANSION: Final = 50_000
#: The most steps one validation of a reply may take (a keyword check costs the
#: items of its value; one that goes into an array or object, a step per part
#: too); past it the reply is refused as too costly to check.
SCHEMA_MAX_STEPS: Final = 200_000
#: The most tools one request may give (the OpenAI API's limit).
TOOLS_MAX_COUNT: Final = 128
#: The largest sum of all tools' parameter schemas of one request, in bytes.
TOOLS_MAX_BYTES: Final = 256 * 1024

# koala sandbox --------------------------------------------------------------

SANDBOX_HOST: Final = "127.0.0.1"
#: What `koala sandbox --protocol` takes: one dialect, or `any` of them.
SANDBOX_PROTOCOLS: Final[tuple[SandboxProtocol, ...]] = get_args(SandboxProtocol)
SANDBOX_PORT: Final = 8000
#: Seconds between the pieces of the sandbox's default reply.
SANDBOX_INTERVAL: Final = 0.0
#: Requests a long-running sandbox keeps for inspection (the latest ones).
SANDBOX_KEEP_REQUESTS: Final = 1000

# koala chat, demo and check -------------------------------------------------

#: Seconds between the pieces of the in-process sandbox of `koala chat
#: --sandbox` and `koala demo`, so that a person sees the reply stream.
CHAT_SANDBOX_INTERVAL: Final = 0.05
#: What `koala check` sends.
CHECK_PROMPT: Final = "Say hello in one word."
