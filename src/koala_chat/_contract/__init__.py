"""The OpenAI contract that `Client`, `AsyncClient` and `koala serve` share.

One job per module, imported in this order (each only from those above it):

    capabilities.py  what a provider declares it offers (models by protocol)
    types.py         the OpenAI-shaped objects (`ChatCompletion`, chunks, usage),
                     declared once as `msgspec.Struct`s: the wire shape
    usage.py         the token estimate and the usage object built from it
    cutting.py       `stop` and `max_tokens` applied on our side (`ReplyCutter`)
    neutral.py       the values of a refused parameter that ask for nothing
    worker.py        a few threads for the checks that take time, off the loop
    validation.py    a value against a client's schema: no retrieval, RE2, bounded
    schemas.py       a client's JSON Schema checked before any use
    jsonmode.py      JSON mode, emulated: instruction, extraction, validation
    tools.py         tool calls, emulated: instruction, reading calls, history
    conversation.py  the `messages` check, instructions put first
    params.py        the parameter table and `parse_request`
    provider.py      the one provider Protocol, used by every layer
    replies.py       provider values -> text pieces -> completion or chunks
    emulation.py     JSON mode and tool-call replies read whole, checked, retried

Nothing here imports aiohttp or the client; the server imports from here only.
"""
