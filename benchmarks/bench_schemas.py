"""What the JSON Schema limits cost: the check of a schema, the check of a reply.

Each case is a schema (or a reply) as costly as the limits of
`koala_chat/defaults.py` allow, timed on this thread: the work one request
can make a thread of `koala serve`'s check pool do. Beside each, a schema of
the kind clients send (a pydantic model's) as the floor.

    .venv/bin/python benchmarks/bench_schemas.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from typing import Any

from koala_chat._contract.schemas import SchemaProblem, check_schema
from koala_chat._contract.validation import validate
from koala_chat.defaults import SCHEMA_MAX_STEPS, SCHEMA_MAX_SUBSCHEMAS

#: As pydantic writes a model with a nested model and a list of them.
TYPICAL: dict[str, Any] = {
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            "required": ["street", "city"],
        }
    },
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Z][a-z]+$"},
        "born": {"type": "integer"},
        "addresses": {"type": "array", "items": {"$ref": "#/$defs/Address"}},
    },
    "required": ["name", "born", "addresses"],
}


def wide(count: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{n}": {} for n in range(count)}}


def doubling(levels: int) -> dict[str, Any]:
    definitions: dict[str, Any] = {"d0": {"type": "string"}}
    for n in range(1, levels):
        definitions[f"d{n}"] = {"allOf": [{"$ref": f"#/$defs/d{n - 1}"}] * 2}
    return {"$defs": definitions, "$ref": f"#/$defs/d{levels - 1}"}


def check(schema: Any) -> Callable[[], None]:
    def run() -> None:
        # A refused schema costs what its check did until it was refused.
        with contextlib.suppress(SchemaProblem):
            check_schema(schema)

    return run


def reply(value: Any, schema: Any) -> Callable[[], None]:
    def run() -> None:
        validate(value, schema)

    return run


CASES: list[tuple[str, Callable[[], None]]] = [
    ("check: a pydantic model (floor)", check(TYPICAL)),
    (
        f"check: {SCHEMA_MAX_SUBSCHEMAS} subschemas (the limit)",
        check(wide(SCHEMA_MAX_SUBSCHEMAS - 1)),
    ),
    ("check: refs doubling 15 times (refused)", check(doubling(15))),
    (
        "reply: a person with 100 addresses (floor)",
        reply(
            {
                "name": "Ada",
                "born": 1815,
                "addresses": [{"street": "s", "city": "c"}] * 100,
            },
            TYPICAL,
        ),
    ),
    (
        f"reply: {SCHEMA_MAX_STEPS} steps of items (refused)",
        reply([0] * SCHEMA_MAX_STEPS, {"items": {"type": "integer"}}),
    ),
    (
        "reply: refs doubling 14 times (within the limits)",
        reply(5, doubling(14)),
    ),
    (
        "reply: an enum of 10,000 against 1,000 items (refused)",
        reply([-1] * 1000, {"items": {"enum": list(range(10_000))}}),
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    repeat = parser.parse_args().repeat
    for name, case in CASES:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            case()
            times.append(time.perf_counter() - started)
        print(f"{name:58} best {min(times) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
