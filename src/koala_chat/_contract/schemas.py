"""A client's JSON Schema, checked when the request comes, before any use.

The schemas of `response_format` and of each tool's `parameters` come from the
client: they are data, never a way to reach anything or to make the server
work without end. `check_schema` refuses (with a `SchemaProblem` whose text
says why; the parameter checks turn it into a `UsageError`, a 400) a schema

- larger than `SCHEMA_MAX_BYTES` of JSON, nested deeper than
  `SCHEMA_MAX_DEPTH`, or with more than `SCHEMA_MAX_SUBSCHEMAS` subschemas;
- whose `$schema` names no draft we know (4, 6, 7, 2019-09 and 2020-12), or
  that gives `$schema` anywhere but at its top;
- with a `$ref` that is not a fragment (`#...`), that resolves to nothing, or
  to a place that is not a subschema; with `$dynamicRef` or `$recursiveRef`;
- whose references loop without going into a part of the value
  (`{"$ref": "#"}`): validating it would never end;
- that stands for more than `SCHEMA_MAX_EXPANSION` subschemas once its
  references are expanded;
- with a `pattern` or `patternProperties` key RE2 cannot compile, or with
  `unevaluatedProperties` beside `patternProperties` (jsonschema would match
  those patterns with Python's `re`, see `validation.py`);
- that its draft's metaschema refuses.

Pure, but its cost grows with the schema: run it off the event loop
(`worker.off_loop`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .. import defaults
from ..messages import JSONValue
from .validation import PatternError, compile_pattern, dialect_of

if TYPE_CHECKING:
    from referencing import Registry, Specification

__all__ = ["CheckedSchema", "SchemaProblem", "check_schema"]

#: The longest part of a metaschema's complaint quoted back, in characters.
_LONGEST_QUOTE: Final = 300

# Where each keyword keeps its subschemas, and whether they apply to the value
# itself or to parts of it (its items, its properties' values, ...).
_SAME_ONE: Final = ("not", "if", "then", "else")
_SAME_LIST: Final = ("allOf", "anyOf", "oneOf")
_SAME_MAP: Final = ("dependentSchemas", "dependencies")
_PART_ONE: Final = (
    "items",
    "additionalItems",
    "contains",
    "additionalProperties",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
_PART_LIST: Final = ("items", "prefixItems")
_PART_MAP: Final = ("properties", "patternProperties")
#: Subschemas kept for references only: applied to nothing by themselves.
_KEPT_MAP: Final = ("$defs", "definitions")

#: The references we cannot follow safely: they depend on the way taken.
_DYNAMIC: Final = ("$dynamicRef", "$recursiveRef")


class SchemaProblem(ValueError):
    """A JSON Schema that cannot be used; the text says why."""


@dataclass(frozen=True, slots=True)
class CheckedSchema:
    """A usable schema as plain JSON, its size in bytes and its subschemas."""

    schema: JSONValue
    size: int
    subschemas: int


@dataclass(slots=True)
class _Node:
    """One subschema: where it is, and the subschemas it applies."""

    schema: JSONValue
    path: str
    parent: int | None
    same: list[int] = field(default_factory=list)
    parts: list[int] = field(default_factory=list)


def check_schema(
    schema: JSONValue,
    *,
    max_bytes: int = defaults.SCHEMA_MAX_BYTES,
    max_subschemas: int = defaults.SCHEMA_MAX_SUBSCHEMAS,
) -> CheckedSchema:
    """Check a client's JSON Schema; return it as plain JSON, with its size.

    The schema returned is a copy made of JSON values only (a mapping of the
    library's caller becomes a dict); its size is that of its compact JSON
    text, in bytes.

    Raises:
        SchemaProblem: the schema cannot be used (see the module docstring).
    """
    if not isinstance(schema, dict | bool):
        raise SchemaProblem("must be a JSON Schema object")
    try:
        text = json.dumps(
            schema, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except RecursionError as exc:
        raise SchemaProblem(_too_deep()) from exc
    except (TypeError, ValueError) as exc:
        raise SchemaProblem(f"must be made of JSON values only: {exc}") from exc
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise SchemaProblem(
            f"the schema is {size} bytes of JSON, more than the limit of {max_bytes}"
        )
    plain: JSONValue = json.loads(text)
    if _depth_over(plain, defaults.SCHEMA_MAX_DEPTH):
        raise SchemaProblem(_too_deep())
    if not isinstance(plain, dict):
        return CheckedSchema(plain, size, 1)
    count = _check_document(plain, max_subschemas)
    return CheckedSchema(plain, size, count)


def _check_document(schema: dict[str, JSONValue], max_subschemas: int) -> int:
    """Check a schema object; return how many subschemas it has (itself too)."""
    cls = dialect_of(schema)
    if cls is None:
        raise SchemaProblem(
            f"$schema: {_quote(schema.get('$schema'))} names no draft this "
            "server knows; leave it out, or name draft 4, 6, 7, 2019-09 or 2020-12"
        )
    # The references resolve against the schema as it is validated: without
    # its `$schema` (see `validation._validator`).
    root = {key: value for key, value in schema.items() if key != "$schema"}
    nodes = _walk(root, max_subschemas)
    _check_keywords(nodes)
    _check_metaschema(cls, schema)
    _resolve_references(nodes, cls.META_SCHEMA["$schema"])
    _check_loops(nodes)
    _check_expansion(nodes)
    return len(nodes)


def _walk(root: JSONValue, limit: int) -> dict[int, _Node]:
    """Return every subschema of `root`, by `id()`, root first.

    Raises:
        SchemaProblem: there are more than `limit`.
    """
    nodes: dict[int, _Node] = {id(root): _Node(root, "", None)}
    stack = [id(root)]
    while stack:
        key = stack.pop()
        node = nodes[key]
        if not isinstance(node.schema, dict):
            continue
        for path, child, applies in _children(node.schema):
            if id(child) in nodes:
                continue
            nodes[id(child)] = _Node(child, f"{node.path}/{path}", key)
            if len(nodes) > limit:
                raise SchemaProblem(f"the schema has more than {limit} subschemas")
            stack.append(id(child))
            if applies == "same":
                node.same.append(id(child))
            elif applies == "part":
                node.parts.append(id(child))
    return nodes


def _children(schema: dict[str, JSONValue]) -> Iterator[tuple[str, JSONValue, str]]:
    """Yield each subschema of `schema`: its path, itself, what it applies to."""
    for applies, ones, lists, maps in (
        ("same", _SAME_ONE, _SAME_LIST, _SAME_MAP),
        ("part", _PART_ONE, _PART_LIST, _PART_MAP),
        ("kept", (), (), _KEPT_MAP),
    ):
        for keyword in ones:
            value = schema.get(keyword)
            if isinstance(value, dict | bool):
                yield _escape(keyword), value, applies
        for keyword in lists:
            value = schema.get(keyword)
            if isinstance(value, list):
                for index, item in enumerate(value):
                    if isinstance(item, dict | bool):
                        yield f"{_escape(keyword)}/{index}", item, applies
        for keyword in maps:
            value = schema.get(keyword)
            if isinstance(value, dict):
                for name, item in value.items():
                    if isinstance(item, dict | bool):
                        yield f"{_escape(keyword)}/{_escape(name)}", item, applies


def _check_keywords(nodes: dict[int, _Node]) -> None:
    """Refuse what no subschema may hold: foreign `$ref`s, patterns RE2 refuses."""
    unevaluated = patterned = False
    for node in nodes.values():
        schema = node.schema
        if not isinstance(schema, dict):
            continue
        at = _at(node)
        if "$schema" in schema:
            raise SchemaProblem(f"$schema{at}: is allowed only at the top")
        for keyword in _DYNAMIC:
            if keyword in schema:
                raise SchemaProblem(
                    f"{keyword}{at}: not supported; use $ref to a place in the "
                    "schema ('#/$defs/...')"
                )
        ref = schema.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise SchemaProblem(
                f"$ref{at}: {_quote(ref)} points outside the schema; only "
                "references into the schema itself ('#...') are followed"
            )
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            _check_pattern(f"pattern{at}", pattern)
        properties = schema.get("patternProperties")
        if isinstance(properties, dict):
            patterned = patterned or bool(properties)
            for key in properties:
                _check_pattern(f"patternProperties{at}", key)
        unevaluated = unevaluated or "unevaluatedProperties" in schema
    if unevaluated and patterned:
        raise SchemaProblem(
            "unevaluatedProperties cannot be used in a schema with "
            "patternProperties here; use additionalProperties"
        )


def _check_pattern(where: str, pattern: str) -> None:
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise SchemaProblem(
            f"{where}: the pattern {_quote(pattern)} cannot be used: {exc} "
            "(patterns run in RE2: no backreferences, no lookaround)"
        ) from exc


def _check_metaschema(cls: Any, schema: dict[str, JSONValue]) -> None:
    from jsonschema.exceptions import SchemaError

    try:
        cls.check_schema(schema, format_checker=cls.FORMAT_CHECKER)
    except SchemaError as exc:
        raise SchemaProblem(f"not a valid JSON Schema: {_clip(exc.message)}") from exc


def _resolve_references(nodes: dict[int, _Node], dialect: str) -> None:
    """Follow each `$ref`: it must resolve, without retrieval, to a subschema.

    Each reference becomes an edge to the subschema it names, applied to the
    same value.
    """
    from jsonschema_specifications import REGISTRY
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import specification_with

    specification: Specification[Any] = specification_with(dialect)
    # The registry the validator resolves in (`validation._validator`): the
    # metaschemas, and nothing to retrieve. A `$id` of a metaschema makes its
    # `#...` resolve in the metaschema, which is no subschema of this one.
    registry: Registry[Any] = REGISTRY
    resolvers: dict[int, Any] = {}
    for key, node in nodes.items():
        ref = None
        try:
            resource = specification.create_resource(node.schema)
            if node.parent is None:
                resolvers[key] = registry.resolver_with_root(resource)
            else:
                resolvers[key] = resolvers[node.parent].in_subresource(resource)
            ref = node.schema.get("$ref") if isinstance(node.schema, dict) else None
            if not isinstance(ref, str):
                continue
            target = resolvers[key].lookup(ref).contents
        except (Unresolvable, ValueError) as exc:
            where = "$id" if ref is None else f"$ref {_quote(ref)}"
            raise SchemaProblem(
                f"{where}{_at(node)}: cannot be resolved in the schema: "
                f"{_clip(str(exc))}"
            ) from exc
        if id(target) not in nodes:
            raise SchemaProblem(
                f"$ref{_at(node)}: {_quote(ref)} does not point to a subschema"
            )
        node.same.append(id(target))


def _check_loops(nodes: dict[int, _Node]) -> None:
    """Refuse subschemas that apply themselves to the same value, in a loop."""
    done: set[int] = set()
    for start in nodes:
        if start in done:
            continue
        path = [start]
        on_path = {start}
        pending = [iter(nodes[start].same)]
        while pending:
            step = next(pending[-1], None)
            if step is None:
                pending.pop()
                on_path.discard(path[-1])
                done.add(path.pop())
            elif step in on_path:
                loop = ", ".join(
                    "#" + nodes[key].path for key in path[path.index(step) :]
                )
                raise SchemaProblem(
                    f"$ref: the subschemas at {loop} refer back to themselves for "
                    "the same value (not inside its properties or items), so "
                    "validating would never end"
                )
            elif step not in done:
                path.append(step)
                on_path.add(step)
                pending.append(iter(nodes[step].same))


def _check_expansion(nodes: dict[int, _Node]) -> None:
    """Refuse a schema that stands for too many subschemas, references expanded.

    Each subschema counts once per way to reach it from the top; a reference
    back to a subschema on the way (recursion into a part of the value, which
    the value's depth bounds) counts nothing more.
    """
    limit = defaults.SCHEMA_MAX_EXPANSION
    sizes: dict[int, int] = {}
    root = next(iter(nodes))
    path = [root]
    on_path = {root}
    pending = [iter(_edges(nodes[root]))]
    totals = [1]
    while pending:
        step = next(pending[-1], None)
        if step is None:
            pending.pop()
            on_path.discard(path[-1])
            sizes[path.pop()] = total = totals.pop()
            if totals:
                totals[-1] += total
        elif step in sizes:
            totals[-1] += sizes[step]
        elif step not in on_path:
            path.append(step)
            on_path.add(step)
            pending.append(iter(_edges(nodes[step])))
            totals.append(1)
        if totals and totals[-1] > limit:
            raise SchemaProblem(
                "with its references expanded, the schema stands for more than "
                f"{limit} subschemas"
            )


def _edges(node: _Node) -> list[int]:
    return [*node.same, *node.parts]


def _depth_over(value: JSONValue, limit: int) -> bool:
    """Tell whether `value` nests objects and arrays deeper than `limit`."""
    level: list[JSONValue] = [value]
    depth = 0
    while level:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [
            child
            for item in containers
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return False


def _at(node: _Node) -> str:
    return f" at #{node.path}" if node.path else ""


def _escape(name: str) -> str:
    """Return `name` as a JSON Pointer segment (RFC 6901, section 3)."""
    return name.replace("~", "~0").replace("/", "~1")


def _quote(value: JSONValue) -> str:
    return _clip(repr(value))


def _clip(text: str) -> str:
    if len(text) <= _LONGEST_QUOTE:
        return text
    return text[: _LONGEST_QUOTE - 3] + "..."


def _too_deep() -> str:
    return (
        "the schema nests objects and arrays more than "
        f"{defaults.SCHEMA_MAX_DEPTH} levels deep"
    )
