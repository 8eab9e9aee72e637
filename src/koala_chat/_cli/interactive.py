"""The interactive session of `koala chat`: a conversation that remembers.

The whole conversation (system, user and assistant messages) is kept and sent
with every turn. Input comes from `input()` with the standard library's
`readline` loaded, which gives line editing and the history of this session
(arrow keys, Ctrl-R) without a dependency.

Ctrl-C during a reply cancels that reply's task: `asyncio.Runner` turns the
signal into a cancellation, the provider closes the response, and what came
stays in the conversation, marked with `CUT_MARK`. Ctrl-C or Ctrl-D at the
prompt leaves; SIGTERM ends the session as Ctrl-C does, exiting with 143.

No command ends the session by failing: an error it expects, and any it does
not, is one line on stderr, and the conversation stays as it was before the
command. `/save` and `/load` go through `conversation.py`: the file is replaced
atomically, and `/load` reads only a regular file of at most 16 MiB. A typed
line with bytes that are not UTF-8 is kept with each such byte replaced by
U+FFFD, and a note says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable

from ..errors import KoalaError, UsageError
from ..messages import JSONValue, Messages, text_of
from .conversation import (
    MAX_CONVERSATION_BYTES,
    conversation_path,
    load_messages,
    save_messages,
    without_surrogates,
)
from .exits import ExitCode, one_line
from .hints import Situation
from .options import Connection
from .output import Output
from .provider import Provider, endpoint_of, model_for, name_of, speaks_dialects
from .redaction import Redactor
from .reply import stream_reply
from .termination import terminated

__all__ = ["CUT_MARK", "PROMPT", "Session"]

PROMPT = "> "
#: The longest note the session prints: an error may quote a value of a
#: loaded file, and a 16 MiB role name is not worth a screenful.
MAX_NOTE_CHARS = 500
#: Appended to a reply stopped with Ctrl-C, in the conversation that is sent on
#: and saved ("the partial text stays in history, marked as cut").
CUT_MARK = "[cut off]"

_LIMIT = f"{MAX_CONVERSATION_BYTES / 2**20:g} MiB"
HELP = f"""\
commands:
  /reset          start over (system messages given with -s stay)
  /model [NAME]   show or change the model
  /system [TEXT]  add a system message, or list them
  /save FILE      save the conversation as JSON (OpenAI messages); the file
                  is replaced whole or not at all
  /load FILE      replace the conversation with a saved one (at most {_LIMIT})
  /exit           leave (Ctrl-D and Ctrl-C at the prompt leave too)
Ctrl-C during a reply stops it; its text stays, marked {CUT_MARK}.
A line starting with // is sent with one / removed."""


class Session:
    """One interactive conversation with a provider on a terminal."""

    def __init__(
        self,
        provider: Provider,
        connection: Connection,
        systems: Messages,
        output: Output,
        situation: Situation | None = None,
    ) -> None:
        self.provider = provider
        #: What the command line knew, for the next step of an error.
        self.situation = situation or Situation(command="chat")
        self.connection = connection
        self.initial: Messages = list(systems)
        self.messages: Messages = list(systems)
        self.output = output
        self._redact = Redactor.from_values([connection.endpoint, connection.proxy])
        self._commands: dict[str, Callable[[str], bool]] = {
            "/help": self._help,
            "/reset": self._reset,
            "/model": self._model,
            "/system": self._system,
            "/save": self._save,
            "/load": self._load,
            "/exit": self._exit,
            "/quit": self._exit,
        }

    def run(self) -> int:
        """Read and answer lines until the user leaves; return the exit code."""
        import readline  # noqa: F401  (loading it gives input() line editing)

        self._note(
            f"chatting with {name_of(self.provider)} ({self._where()}); "
            "/help lists commands"
        )
        self._decode_leniently()
        with asyncio.Runner() as runner:
            while True:
                try:
                    line = input(PROMPT)
                except EOFError:
                    self._end_line()
                    return ExitCode.OK
                except KeyboardInterrupt:
                    self._end_line()
                    return self._interrupted_code()
                except UnicodeDecodeError:
                    # Only when stdin's decoder could not be made lenient.
                    self._note("the line was not UTF-8 text and was ignored")
                    continue
                if self.handle(line, runner):
                    return ExitCode.OK

    def handle(self, line: str, runner: asyncio.Runner) -> bool:
        """Act on one line of input; return True when the user wants to leave.

        No failure of the line's command or turn escapes, except the user's own
        interruption of a turn by SIGTERM: the error is noted in one line and
        the conversation is left as it was before the line.
        """
        line, replaced = without_surrogates(line)
        if replaced:
            self._note(
                f"{replaced} byte(s) of the line were not UTF-8 text; "
                "each is kept as U+FFFD"
            )
        before = list(self.messages)
        try:
            return self._dispatch(line.strip(), runner)
        except KeyboardInterrupt:
            self.output.interrupted()
            if terminated():
                raise
            self.messages = before
            self._note("interrupted; the conversation is as it was")
        except Exception as exc:
            self.output.interrupted()
            self.messages = before
            self._error(exc)
        return False

    def _dispatch(self, text: str, runner: asyncio.Runner) -> bool:
        if not text:
            return False
        if text.startswith("/") and not text.startswith("//"):
            name, _, argument = text.partition(" ")
            command = self._commands.get(name)
            if command is None:
                self._note(f"unknown command {name}; /help lists the commands")
                return False
            return command(argument.strip())
        self.ask(text.removeprefix("/") if text.startswith("//") else text, runner)
        return False

    def ask(self, text: str, runner: asyncio.Runner) -> None:
        """Send one user turn with the whole conversation and stream the reply."""
        self.messages.append({"role": "user", "content": text})
        values: list[JSONValue] = []
        reply = stream_reply(
            self.provider, self.connection, list(self.messages), self.output, values
        )
        try:
            runner.run(reply)
        except KeyboardInterrupt:
            self.output.interrupted()
            if terminated():
                raise
            partial = "".join(text_of(value) for value in values)
            space = "" if not partial or partial[-1].isspace() else " "
            cut = f"{partial}{space}{CUT_MARK}"
            self.messages.append({"role": "assistant", "content": cut})
            self._note(f"reply stopped; kept in the conversation, marked {CUT_MARK}")
            return
        except KoalaError as exc:
            self.output.interrupted()
            # The turn did not happen: forget the question, keep the session.
            self.messages.pop()
            self._error(exc)
            return
        self.output.finish()
        text = "".join(text_of(value) for value in values)
        self.messages.append({"role": "assistant", "content": text})

    def _help(self, argument: str) -> bool:
        self._note(HELP, prefix="")
        return False

    def _reset(self, argument: str) -> bool:
        self.messages = list(self.initial)
        self._note("the conversation starts over")
        return False

    def _model(self, argument: str) -> bool:
        try:
            model = model_for(
                self.provider, argument or self.connection.model, self._protocol()
            )
        except UsageError as exc:
            self._error(exc)
            return False
        if argument:
            self.connection = self.connection._replace(model=model)
        self._note(f"model: {model}")
        return False

    def _system(self, argument: str) -> bool:
        if argument:
            self.messages.append({"role": "system", "content": argument})
            self._note("system message added; it applies from the next turn on")
            return False
        systems = [m["content"] for m in self.messages if m["role"] == "system"]
        if not systems:
            self._note("no system messages; /system TEXT adds one")
        for content in systems:
            self._note(f"system: {content}")
        return False

    def _save(self, argument: str) -> bool:
        if not argument:
            self._note("usage: /save FILE")
            return False
        try:
            path = conversation_path(argument)
            replaced = save_messages(path, self.messages)
        except (OSError, UsageError) as exc:
            self._error(exc)
            return False
        self._note(f"saved {len(self.messages)} messages to {path}")
        if replaced:
            self._note(f"{replaced} character(s) that were not text saved as U+FFFD")
        return False

    def _load(self, argument: str) -> bool:
        if not argument:
            self._note("usage: /load FILE")
            return False
        try:
            self.messages = load_messages(conversation_path(argument))
        except (OSError, UsageError) as exc:
            self._error(exc)
            return False
        self._note(f"loaded {len(self.messages)} messages from {argument}")
        return False

    def _exit(self, argument: str) -> bool:
        return True

    def _where(self) -> str:
        from .._urls import redact_url

        protocol = self._protocol()
        model = model_for(self.provider, self.connection.model, protocol)
        where = f"model {model}"
        if protocol is not None:
            where += f", protocol {protocol}"
        endpoint = endpoint_of(self.provider, self.connection.endpoint)
        return f"{where}, {redact_url(endpoint)}" if endpoint else where

    def _protocol(self) -> str | None:
        """The protocol in use, when the provider speaks dialects."""
        if not speaks_dialects(self.provider):
            return None
        return self.connection.dialect_setting

    def _error(self, exc: Exception) -> None:
        """Report a failed turn or command in one line; the session goes on."""
        self._note(f"error: {one_line(exc, situation=self.situation)}")

    def _note(self, text: str, *, prefix: str = "koala: ") -> None:
        text = self._redact(without_surrogates(text)[0])
        if prefix and len(text) > MAX_NOTE_CHARS:
            text = text[: MAX_NOTE_CHARS - 1] + "…"
        sys.stderr.write(f"{prefix}{text}\n")
        sys.stderr.flush()

    def _end_line(self) -> None:
        sys.stdout.write("\n")
        sys.stdout.flush()

    def _interrupted_code(self) -> ExitCode:
        return ExitCode.TERMINATED if terminated() else ExitCode.INTERRUPTED

    @staticmethod
    def _decode_leniently() -> None:
        """Let `input()` return a line that is not UTF-8 instead of raising:
        each bad byte becomes a surrogate (`handle` turns it into U+FFFD)."""
        reconfigure = getattr(sys.stdin, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="surrogateescape")
