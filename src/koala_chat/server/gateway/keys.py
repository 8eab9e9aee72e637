"""The keys file of a shared gateway: named keys, their hashes and limits.

    [keys.alice]
    key_sha256 = "<hex SHA-256 of the key>"
    requests_per_minute = 60
    requests_per_day = 2000
    max_streams = 4

Only the hash of a key is written down, so the file may be read by whoever
runs the server without giving the keys away. Every limit is optional; a key
without any is unlimited. A key is found by the SHA-256 of what a client
presents, looked up in a dict: what the lookup's timing could reveal is the
hash of a wrong guess, which tells nothing about a right key. Messages name
the file and the key's name, never a key or a hash.

`add_key` appends a new entry as text, so the file keeps its other entries,
its comments and its layout.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ...errors import UsageError

__all__ = [
    "LIMIT_FIELDS",
    "KeyEntry",
    "KeyTable",
    "Limits",
    "add_key",
    "hash_key",
    "load_keys",
    "new_key",
]

#: The limits of an entry, as the file names them.
LIMIT_FIELDS: Final = ("requests_per_minute", "requests_per_day", "max_streams")

#: A key's name: TOML's bare keys, so that `[keys.NAME]` needs no quoting, and
#: short enough for a log line or a metric's label.
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEX_SHA256: Final = re.compile(r"[0-9a-f]{64}")

#: The prefix of a generated key: a scanner for leaked secrets can find it.
KEY_PREFIX: Final = "koala-"


@dataclass(frozen=True, slots=True)
class Limits:
    """A key's limits; None for no limit of that kind."""

    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    max_streams: int | None = None

    @property
    def windows(self) -> tuple[tuple[str, int, int], ...]:
        """Return (field, seconds, most requests) of each window that applies."""
        pairs = (
            ("requests_per_minute", 60, self.requests_per_minute),
            ("requests_per_day", 86400, self.requests_per_day),
        )
        return tuple((f, span, most) for f, span, most in pairs if most is not None)

    @property
    def unlimited(self) -> bool:
        """Tell whether the key has no limit at all (nothing to count)."""
        return not self.windows and self.max_streams is None


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One named key: its name, its limits (the hash stays in the table)."""

    name: str
    limits: Limits


class KeyTable:
    """The keys of one reading of the file, found by the hash of a key."""

    __slots__ = ("_by_hash", "names")

    def __init__(self, entries: Mapping[bytes, KeyEntry]) -> None:
        self._by_hash = dict(entries)
        #: The names, in the file's order.
        self.names = tuple(entry.name for entry in self._by_hash.values())

    def __len__(self) -> int:
        return len(self._by_hash)

    def find(self, key: bytes | None) -> KeyEntry | None:
        """Return the entry of the presented `key`; None for an unknown one."""
        if key is None:
            return None
        return self._by_hash.get(hashlib.sha256(key).digest())


def hash_key(key: str) -> str:
    """Return the hex SHA-256 of `key`, as the file holds it."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """Return a new key: 256 random bits (`secrets`), URL-safe, prefixed."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_keys(path: str) -> KeyTable:
    """Return the keys of the file at `path`.

    Raises:
        UsageError: the file cannot be read, is not TOML, names no keys, or
            has an entry that is not as the module's docstring shows.
    """
    return parse_keys(_read(path), path)


def parse_keys(text: str, path: str) -> KeyTable:
    """Return the keys of `text`, the content of the file at `path`.

    Raises:
        UsageError: as `load_keys`.
    """
    document = _toml(text, path)
    table = document.get("keys")
    if not isinstance(table, dict) or not table:
        raise UsageError(
            f"the keys file {path} names no keys: add one with "
            f"`koala keys add NAME --file {path}`"
        )
    entries: dict[bytes, KeyEntry] = {}
    for name, fields in table.items():
        digest, entry = _entry(name, fields, path)
        if digest in entries:
            raise UsageError(
                f"the keys file {path} gives keys {entries[digest].name!r} and "
                f"{name!r} the same key_sha256: each key needs a key of its own"
            )
        entries[digest] = entry
    return KeyTable(entries)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except FileNotFoundError:
        raise UsageError(
            f"there is no keys file {path}: create it with "
            f"`koala keys add NAME --file {path}`"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot read the keys file {path}: {reason}") from None
    except UnicodeDecodeError:
        raise UsageError(f"the keys file {path} is not UTF-8 text") from None


def _toml(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says where, not what it read: no hash reaches the message.
        raise UsageError(f"the keys file {path} is not valid TOML: {exc}") from None


def _entry(name: str, fields: object, path: str) -> tuple[bytes, KeyEntry]:
    """Return the hash and entry of `[keys.NAME]`.

    Raises:
        UsageError: a bad name, a missing or malformed hash, an unknown field,
            or a limit that is not a whole number >= 1.
    """
    where = f"the keys file {path}, key {name!r}"
    check_name(name, where=f"the keys file {path}")
    if not isinstance(fields, dict):
        raise UsageError(f"{where}: expected a table [keys.{name}]")
    unknown = sorted(set(fields) - {"key_sha256", *LIMIT_FIELDS})
    if unknown:
        raise UsageError(
            f"{where}: unknown field {unknown[0]!r}; the fields are key_sha256, "
            + ", ".join(LIMIT_FIELDS)
        )
    digest = fields.get("key_sha256")
    if not isinstance(digest, str) or not _HEX_SHA256.fullmatch(digest.lower()):
        raise UsageError(
            f"{where}: key_sha256 must be the key's SHA-256 as 64 hex digits"
        )
    limits: dict[str, int] = {}
    for field in LIMIT_FIELDS:
        value = fields.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{where}: {field} must be a whole number >= 1")
        limits[field] = value
    return bytes.fromhex(digest), KeyEntry(name, Limits(**limits))


def check_name(name: str, *, where: str = "a key's name") -> None:
    """Refuse a name that is not 1 to 64 letters, digits, `_` or `-`.

    Raises:
        UsageError: the name is not one.
    """
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{where}: a key's name is 1 to 64 letters, digits, _ or -, "
            f"not {name[:70]!r}"
        )


def add_key(path: str, name: str, limits: Limits) -> str:
    """Append a new key named `name` with `limits` to the file; return the key.

    The file is created (readable by its owner only) when missing. The entry
    is appended as text; the whole file with it is parsed before anything is
    written, so a file this would break is left as it was.

    Raises:
        UsageError: a bad name, a name the file has already, or a file that
            is not a valid keys file (or would not be one with the entry).
    """
    check_name(name)
    try:
        old = _read(path)
    except UsageError:
        if os.path.exists(path):
            raise
        old = ""
    existing = _toml(old, path).get("keys", {})
    if isinstance(existing, dict) and name in existing:
        raise UsageError(
            f"the keys file {path} has a key named {name!r} already: choose "
            "another name, or delete its entry first"
        )
    key = new_key()
    entry = _entry_text(name, hash_key(key), limits)
    separator = _blank_line_after(old)
    table = parse_keys(old + separator + entry, path)
    if name not in table.names:
        raise UsageError(f"the keys file {path} would not hold {name!r}: check it")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as file:
        file.write(separator + entry)
    return key


def _blank_line_after(text: str) -> str:
    """Return the newlines that end `text` with one blank line (none if empty)."""
    if not text:
        return ""
    trailing = len(text) - len(text.rstrip("\n"))
    return "\n" * max(0, 2 - trailing)


def _entry_text(name: str, digest: str, limits: Limits) -> str:
    lines = [f"[keys.{name}]", f'key_sha256 = "{digest}"']
    for field in LIMIT_FIELDS:
        value = getattr(limits, field)
        if value is not None:
            lines.append(f"{field} = {value}")
    return "\n".join(lines) + "\n"
