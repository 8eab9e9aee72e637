"""An application's own function that calls Koala: the code the example tests.

`headline` asks Koala for a headline and returns it on one line. It knows
nothing of tests: like any code built on koala-chat, it sends its requests to
`KOALA_API_ENDPOINT` when that is set, else to koala.sh.
"""

from __future__ import annotations

from koala_chat import Client

PROMPT = "Write a headline of at most ten words for this article."


def headline(article: str) -> str:
    """Return a one-line headline for `article`, written by Koala.

    Raises:
        KoalaError: the request failed (see `koala_chat.errors`).
    """
    with Client() as client:
        completion = client.chat.completions.create(
            model="",
            messages=[
                {"role": "system", "content": PROMPT},
                {"role": "user", "content": article},
            ],
        )
    text = completion.choices[0].message.content or ""
    return " ".join(text.split())
