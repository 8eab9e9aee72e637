"""The test of `headline`, against an answer recorded once.

The loop:

1. Record once, with the real service (or any endpoint) reachable:

       pytest examples/recorded --koala-record
       # or from another endpoint: --koala-upstream URL [--koala-proxy URL]

   The `koala_cassette` marker points `KOALA_API_ENDPOINT` at a local sandbox
   that passes each request on, streams the answer back, and appends the
   exchange, without keys or cookies, to `cassettes/headline.jsonl`.
2. Commit the cassette.
3. In CI, plain `pytest examples/recorded` replays it: the same answer, byte
   for byte, and no network. A request the cassette lacks (the prompt was
   changed, say) fails with a 404 that names the nearest recorded request:
   record again.

The cassette here was recorded from a `koala sandbox --protocol messages`
standing in for koala.sh, which speaks only the messages dialect since 2026:
it holds the refused history request of the `auto` negotiation, then the
messages reply (docs/protocol.md, "Choosing a dialect").
"""

from __future__ import annotations

import pytest
from headline import headline

from koala_chat.pytest_plugin import KoalaCassette

ARTICLE = "Koalas sleep up to twenty hours a day, mostly in the forks of trees."


@pytest.mark.koala_cassette("cassettes/headline.jsonl")
def test_headline_is_one_line_of_the_answer(koala_cassette: KoalaCassette) -> None:
    title = headline(ARTICLE)
    assert "\n" not in title
    assert ARTICLE in title  # the stand-in's answer quotes the article
    # Every request went to the cassette's sandbox, none to the network.
    assert [r.path for r in koala_cassette.requests] == ["/api/gpt/"] * 2
