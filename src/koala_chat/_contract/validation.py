"""Validating a value against a client's JSON Schema: nothing fetched, bounded.

A schema from a request is data (see `schemas.py`, which checks it first), so
the validator built here differs from a stock `jsonschema` one in three ways:

- Its `referencing` registry has no retrieval: only references into the
  schema itself resolve; nothing is ever fetched over the network or read from
  a file (`jsonschema`'s default registry would fetch any URI, on the calling
  thread, with no time limit).
- `pattern`, `patternProperties` (also as `additionalProperties` sees them)
  and `format: "regex"` run in RE2, whose matching takes time linear in the
  text, instead of Python's backtracking `re` (`^(a+)+$` against "aaa...b"
  takes exponential time there). RE2 has no backreferences and no lookaround;
  its syntax is close to the ECMA-262 patterns JSON Schema asks for.
- It counts its steps (a keyword check costs the items of the keyword's
  value, and those that go into an array or object a step per part too) and
  gives up past `SCHEMA_MAX_STEPS`, so a reply and a schema that would take
  long to check cost a bounded time. `uniqueItems` takes linear time.

`validate` returns why a value does not validate ("" when it does); call it
off the event loop (`worker.off_loop`), as its cost grows with the value.
`jsonschema`, `referencing` and `re2` are imported on first use.
"""

from __future__ import annotations

import contextvars
import copy
import json
from collections.abc import Iterator, Mapping
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any, Final, cast

from .. import defaults
from ..messages import JSONValue, replace_surrogates

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

__all__ = [
    "DIALECTS",
    "PatternError",
    "compile_pattern",
    "dialect_of",
    "validate",
]

#: The `$schema` drafts a client's schema may name, by the name `jsonschema`
#: gives their validator; a schema without `$schema` is of the last one.
DIALECTS: Final = (
    "Draft4Validator",
    "Draft6Validator",
    "Draft7Validator",
    "Draft201909Validator",
    "Draft202012Validator",
)

#: RE2's memory for one compiled pattern (its default is 8 MiB); a pattern that
#: needs more does not compile.
_PATTERN_MEMORY: Final = 1 << 20


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the text says why."""


class _TooCostly(Exception):
    """A validation went past `SCHEMA_MAX_STEPS` keyword checks."""


class _Budget:
    """The steps one validation has left, and what each keyword value costs."""

    __slots__ = ("costs", "left")

    def __init__(self, steps: int) -> None:
        self.left = steps
        self.costs: dict[int, int] = {}

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise _TooCostly

    def spend_on(self, value: object) -> None:
        """Spend what checking a keyword with `value` costs: one step per item.

        `enum`, `required` or `properties` go through their lists and objects
        for each value they check, so a keyword costs as many steps as its
        value has items (counted once per validation, and the whole tree).
        """
        key = id(value)
        cost = self.costs.get(key)
        if cost is None:
            cost = self.costs[key] = _items(value)
        self.spend(cost)


def _items(value: object) -> int:
    """Return 1 plus the number of items of the lists and objects in `value`."""
    count = 1
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            count += len(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            count += len(item)
            pending.extend(item)
    return count


def _spend(steps: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.spend(steps)


#: The budget of the validation running in this context (None: no limit).
_BUDGET: Final[contextvars.ContextVar[_Budget | None]] = contextvars.ContextVar(
    "koala_chat_schema_budget", default=None
)


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """Return `pattern` compiled by RE2.

    Raises:
        PatternError: RE2 cannot compile it (a backreference, a lookaround,
            a repetition over 1000, too large); the message says why.
    """
    import re2

    options = re2.Options()
    options.log_errors = False
    options.max_mem = _PATTERN_MEMORY
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(str(reason) or "RE2 cannot compile it") from exc
    except UnicodeEncodeError as exc:
        raise PatternError("it holds a lone surrogate, which is not text") from exc


def _matches(pattern: str, text: str) -> bool:
    """Tell whether `pattern` matches somewhere in `text` (unanchored)."""
    return compile_pattern(pattern).search(replace_surrogates(text)) is not None


def dialect_of(schema: JSONValue) -> type[Validator] | None:
    """Return the validator class of the draft `schema` names (None: unknown).

    A schema without `$schema` (or a boolean one) is of the latest draft.
    """
    from jsonschema import validators

    if not isinstance(schema, dict) or "$schema" not in schema:
        return _safe_class(validators.Draft202012Validator)
    if not isinstance(schema["$schema"], str):
        return None
    # For a `$schema` it does not know, `validator_for` returns `default` (its
    # stubs would have a class there).
    found = validators.validator_for(schema, default=cast(Any, None))
    if found is None or found.__name__ not in DIALECTS:
        return None
    return _safe_class(found)


def validate(value: JSONValue, schema: JSONValue | None) -> str:
    """Return why `value` does not validate against `schema` ("" when it does).

    The reason names the place in the value (`$.a[0]`) and what is wrong there.
    `schema` is one that `schemas.check_schema` accepted; a value that would
    take more than `SCHEMA_MAX_STEPS` checks, or nests too deeply to check, is
    refused with a reason too.
    """
    if schema is None:
        return ""
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    token = _BUDGET.set(_Budget(defaults.SCHEMA_MAX_STEPS))
    try:
        validator = _validator(json.dumps(schema, separators=(",", ":")))
        error = best_match(validator.iter_errors(value))
    except _TooCostly:
        return (
            "it is too costly to check against the schema (more than "
            f"{defaults.SCHEMA_MAX_STEPS} steps)"
        )
    except RecursionError:
        return "it nests too deeply to be checked against the schema"
    except OverflowError:
        # `multipleOf` divides as floats: an integer past 1e308 overflows.
        return "it holds a number too large to be checked against the schema"
    except (Unresolvable, PatternError) as exc:
        # Refused when the request came (schemas.check_schema): only a schema
        # that skipped that check gets here.
        return f"the schema cannot be used: {exc}"
    finally:
        _BUDGET.reset(token)
    if error is None:
        return ""
    where = "$" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}"
        for part in error.absolute_path
    )
    return f"at {where}: {error.message}"


@lru_cache(maxsize=64)
def _validator(schema_text: str) -> Validator:
    """Return a validator of the schema `schema_text`, built once per schema."""
    from jsonschema.validators import Draft202012Validator
    from referencing import Registry

    schema = json.loads(schema_text)
    # `schemas.check_schema` refuses a `$schema` of no known draft; one that
    # skipped that check is of the latest draft, as `jsonschema` would have it.
    cls = dialect_of(schema) or _safe_class(Draft202012Validator)
    if isinstance(schema, dict):
        # Without `$schema`, every subschema is validated by `cls`: jsonschema
        # picks the class of a schema it enters by that schema's `$schema`,
        # and the stock classes match patterns with Python's `re`.
        schema = {key: value for key, value in schema.items() if key != "$schema"}
    # An empty registry retrieves nothing: a reference outside the schema is
    # Unresolvable instead of a request to its URI.
    registry: Registry[Any] = Registry()
    return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)


@cache
def _safe_class(base: type[Validator]) -> type[Validator]:
    """Return `base` with patterns in RE2 and each keyword check counted."""
    from jsonschema import validators

    keywords = {
        **base.VALIDATORS,
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "uniqueItems": _unique_items,
    }
    checker = copy.copy(base.FORMAT_CHECKER)
    checker.checkers = dict(checker.checkers)
    checker.checks("regex")(_is_regex)
    safe: type[Validator] = validators.extend(  # type: ignore[no-untyped-call]
        base,
        {name: _counted(name, check) for name, check in keywords.items()},
        format_checker=checker,
    )
    return safe


#: The keywords that go into each item of an array or each member of an object.
_INTO_PARTS: Final = frozenset(
    {
        "items",
        "prefixItems",
        "additionalItems",
        "contains",
        "properties",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)


def _counted(name: str, check: Any) -> Any:
    """Return the keyword check `check`, spending its steps of the budget first.

    A keyword costs the items of its value (`_Budget.spend_on`), and one that
    goes into the parts of the value a step per part too.
    """
    into_parts = name in _INTO_PARTS

    def counted(
        validator: Validator, value: Any, instance: Any, schema: Mapping[str, Any]
    ) -> Any:
        budget = _BUDGET.get()
        if budget is not None:
            budget.spend_on(value)
            if into_parts and isinstance(instance, list | dict):
                budget.spend(len(instance))
        return check(validator, value, instance, schema)

    return counted


def _is_regex(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        compile_pattern(instance)
    except PatternError:
        return False
    return True


# The keywords that match patterns, as `jsonschema._keywords` has them, with RE2.


def _pattern(
    validator: Validator, pattern: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _matches(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        _spend(len(instance))
        for key, value in instance.items():
            if _matches(pattern, key):
                yield from validator.descend(
                    value, subschema, path=key, schema_path=pattern
                )


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    named = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    _spend(len(instance) * len(patterns))
    extras = sorted(
        (
            key
            for key in instance
            if key not in named and not any(_matches(p, key) for p in patterns)
        ),
        key=str,
    )
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        listed = ", ".join(repr(extra) for extra in extras)
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            regexes = ", ".join(repr(pattern) for pattern in sorted(patterns))
            yield ValidationError(
                f"{listed} {verb} not match any of the regexes: {regexes}"
            )
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(
                f"Additional properties are not allowed ({listed} {verb} unexpected)"
            )


def _unique_items(
    validator: Validator, unique: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    # jsonschema compares unhashable items pairwise, in quadratic time; here
    # each item becomes a hashable key, equal when JSON Schema says the items
    # are equal (1 and 1.0 are, true and 1 are not; an object's key order
    # does not count).
    from jsonschema.exceptions import ValidationError

    if not unique or not validator.is_type(instance, "array"):
        return
    _spend(len(instance))
    seen: set[object] = set()
    for item in instance:
        key = _equality_key(item)
        if key in seen:
            yield ValidationError(f"{instance!r} has non-unique elements")
            return
        seen.add(key)


def _equality_key(value: object) -> object:
    if isinstance(value, dict):
        return ("object", frozenset((k, _equality_key(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", tuple(_equality_key(item) for item in value))
    if isinstance(value, bool) or value is None:
        return ("constant", value)
    if isinstance(value, int | float):
        return ("number", value)
    return ("string", value)
