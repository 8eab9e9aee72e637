"""Error lines as people read them: capitalised sentences, each ended.

The library's messages are clauses ("could not connect to ..."), as Python's
own are; the command lines print them, with what to do next, as sentences.
Standard library only: `koala --help` loads this module.
"""

from __future__ import annotations

__all__ = ["sentence", "sentences"]


def sentences(message: str, step: str) -> str:
    """Return `message` and `step` as two sentences, each capitalised and ended."""
    return f"{sentence(message)} {sentence(step)}"


def sentence(text: str) -> str:
    """Return `text` on one line, capitalised and ended with a full stop.

    A sentence that starts with the endpoint's URL says so first; one that
    starts with an option, a file name or a quoted command is left as it is.
    """
    text = " ".join(text.split())
    if not text:
        return text
    first = text.split(" ", 1)[0]
    if "://" in first:
        text = f"The endpoint {text}"
    elif first.rstrip(",:;").isalpha():
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".?!" else text + "."
