"""Conversation files of the interactive session: `/save` writes them, `/load` reads.

A conversation file is the JSON list of OpenAI messages, UTF-8, as the chat
page's Export writes it. Both directions are built to fail without damage:

- `save_messages` writes a temporary file in the target's folder, syncs
  it to disk and renames it over the target (`os.replace`), so an existing
  file is either replaced whole or left as it was, never truncated. Text that
  is not Unicode (a lone surrogate) is saved as U+FFFD instead of failing.
- `load_messages` opens only regular files and reads at most
  `MAX_CONVERSATION_BYTES`; `/dev/zero`, a FIFO or a directory is refused
  without being read. JSON too deep or numbers too long to convert are
  reported as a `UsageError`, like any other bad file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path

from ..errors import UsageError
from ..messages import Message, Messages, normalize_messages

__all__ = [
    "MAX_CONVERSATION_BYTES",
    "conversation_path",
    "load_messages",
    "save_messages",
    "without_surrogates",
]

#: The largest conversation file `/load` reads: 16 MiB, far beyond any context
#: window, small enough to hold in memory twice over.
MAX_CONVERSATION_BYTES = 16 * 1024 * 1024

#: Mode of a new conversation file: it holds what the user said, so only the
#: owner reads it. A file that exists keeps its own mode.
NEW_FILE_MODE = 0o600

_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> tuple[str, int]:
    """Return `text` with each lone surrogate replaced by U+FFFD, and their count.

    A Python string holds surrogates only when something was decoded with
    `surrogateescape` or parsed from a JSON escape like `"\\ud800"`; UTF-8
    cannot encode them.
    """
    return _SURROGATE.subn("\ufffd", text)


def conversation_path(argument: str) -> Path:
    """Return the path a `/save` or `/load` argument names, `~` expanded.

    Raises:
        UsageError: `~user` names no user, or the name holds a NUL byte.
    """
    if "\0" in argument:
        raise UsageError("a file name cannot hold a NUL character")
    try:
        return Path(argument).expanduser()
    except RuntimeError:
        # pathlib's answer to `~nosuchuser` or to a missing home directory.
        raise UsageError(
            f"cannot expand {argument.split('/', 1)[0]!r}: no such user or no home"
        ) from None


def save_messages(path: Path, messages: Messages) -> int:
    """Write `messages` to `path` atomically; return how many characters that
    are not Unicode text were written as U+FFFD.

    A symbolic link is followed: the file it points to is replaced.

    Raises:
        UsageError: `path` exists and is not a regular file.
        OSError: The folder cannot be written; the target is left as it was.
    """
    text = json.dumps(list(messages), ensure_ascii=False, indent=2) + "\n"
    text, replaced = without_surrogates(text)
    _write_atomically(Path(os.path.realpath(path)), text.encode("utf-8"))
    return replaced


def _write_atomically(target: Path, data: bytes) -> None:
    try:
        mode = stat.S_IMODE(_regular_file_stat(target).st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with open(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)


def _regular_file_stat(path: Path) -> os.stat_result:
    """Return the status of `path`, refusing anything but a regular file."""
    status = path.stat()
    if not stat.S_ISREG(status.st_mode):
        raise UsageError(f"{path} is not a regular file")
    return status


def _sync_folder(folder: Path) -> None:
    """Make the rename durable; a folder that cannot be opened is no error."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def load_messages(path: Path, *, limit: int = MAX_CONVERSATION_BYTES) -> list[Message]:
    """Read a conversation saved by `/save`: a JSON list of OpenAI messages.

    An OpenAI request body (an object with `messages`) is accepted too.

    Raises:
        OSError: The file cannot be opened or read.
        UsageError: It is not a regular file, is larger than `limit` bytes, is
            not UTF-8 JSON, or not a list of valid messages.
    """
    raw = _read_bounded(path, limit)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text: {exc.reason}") from None
    except RecursionError:
        raise UsageError(f"{path} is JSON nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, and the limit on digits of an int.
        raise UsageError(f"{path} is not a JSON file: {exc}") from None
    if isinstance(data, dict) and "messages" in data:
        data = data["messages"]
    if data == []:
        return []
    try:
        normalized = normalize_messages(data)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return [
        {"role": message["role"], "content": message["content"]}
        for message in normalized
    ]


def _read_bounded(path: Path, limit: int) -> bytes:
    """Return the bytes of the regular file `path`, at most `limit` of them."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused next.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        regular = stat.S_ISREG(os.fstat(descriptor).st_mode)
    except BaseException:
        os.close(descriptor)
        raise
    if not regular:
        os.close(descriptor)
        raise UsageError(f"{path} is not a regular file")
    with open(descriptor, "rb", buffering=0) as file:
        # One byte past the limit tells a file of exactly `limit` bytes from a
        # larger one; a /proc file's size is 0, so the size cannot decide.
        chunks: list[bytes] = []
        size = 0
        while size <= limit and (chunk := file.read(limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    if size > limit:
        shown = f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit} bytes"
        raise UsageError(
            f"{path} is larger than {shown}, the limit of a conversation file"
        )
    return b"".join(chunks)
