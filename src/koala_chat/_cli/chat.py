"""`koala chat` and `koala demo`: send a conversation, stream the reply.

The reply is streamed by `reply.py`; without a prompt on a terminal, `koala
chat` hands over to the interactive session (`interactive.py`).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .._args import HelpFormatter, Parser, Subparsers, add_sandbox
from ..defaults import ENDPOINT_VARIABLE, SANDBOX_PORT
from ..errors import UsageError
from ..messages import Message, Messages
from .local import maybe_sandbox
from .options import Connection, sandbox_wanted
from .output import Output, is_terminal
from .reply import send

__all__ = ["SEED_CONVERSATION", "add_parsers", "read_prompt"]

#: The specification's example conversation (docs/protocol.md, "The provider's
#: contract"), which `koala demo` sends.
SEED_CONVERSATION: tuple[Message, ...] = (
    {"role": "user", "content": "Привет, как дела?"},
    {"role": "assistant", "content": "У меня все отлично, спасибо!"},
    {"role": "user", "content": "Расскажи что-нибудь интересное."},
)

CHAT_EPILOG = f"""\
With a PROMPT, or text piped on stdin, one reply is streamed to stdout. With
neither, on a terminal, an interactive session starts: it keeps the whole
conversation and sends it with each turn. /help there lists its commands.

examples:
  koala chat "Tell me about koalas"
  echo "Summarise this" | koala chat -s "Answer in one line"
  git diff | koala chat "Review this diff:"      # the prompt, then stdin
  koala chat -m gpt-4.1 --json "Hi" | jq -r .     # one JSON value per line
  koala chat --sandbox "Hi"                       # a local server, no network
  {ENDPOINT_VARIABLE}=http://127.0.0.1:{SANDBOX_PORT}/api/gpt/ koala chat
  koala chat --proxy socks5h://127.0.0.1:9050 --timeout 60 --retries 0 "Hi"
"""

DEMO_EPILOG = f"""\
Sends the seed's example conversation (two turns of history and a question, in
Russian) through the provider and streams the answer. Without
${ENDPOINT_VARIABLE} or --endpoint it answers from a sandbox started in this
process, and says so on stderr.

examples:
  koala demo
  {ENDPOINT_VARIABLE}=http://127.0.0.1:{SANDBOX_PORT}/api/gpt/ koala demo
  koala demo --json
"""


def add_parsers(
    subparsers: Subparsers,
    connection: Parser,
) -> None:
    """Register `chat` and `demo`."""
    chat = subparsers.add_parser(
        "chat",
        parents=[connection],
        formatter_class=HelpFormatter,
        help="chat with Koala: one prompt, or an interactive session",
        description="Send a prompt to Koala and stream the reply.",
        epilog=CHAT_EPILOG,
    )
    chat.add_argument(
        "prompt",
        nargs="?",
        metavar="PROMPT",
        help="what to say; piped stdin is appended to it (on a line of its own)",
    )
    chat.add_argument(
        "-s",
        "--system",
        action="append",
        default=[],
        metavar="TEXT",
        help="a system message; repeat the option for several",
    )
    _add_output_options(chat)
    add_sandbox(chat, "answer from")
    chat.add_argument(
        "--web", action="store_true", help="chat in the browser (see `koala serve`)"
    )
    chat.set_defaults(handler=run_chat)

    demo = subparsers.add_parser(
        "demo",
        parents=[connection],
        formatter_class=HelpFormatter,
        help="stream the seed's example conversation (offline by default)",
        description="Stream the seed's example conversation through Koala.",
        epilog=DEMO_EPILOG,
    )
    _add_output_options(demo)
    add_sandbox(demo, "answer from (the default without an endpoint)")
    demo.set_defaults(handler=run_demo)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--json",
        action="store_true",
        help="write each streamed value as one JSON line, for scripts",
    )
    group.add_argument(
        "--no-stream",
        action="store_true",
        help="write the reply once, when it is complete",
    )


def run_chat(args: argparse.Namespace) -> int:
    """Run `koala chat`; return the exit code."""
    sandbox = sandbox_wanted(args)
    if args.web:
        from .web import run_web

        return run_web(args)
    connection = Connection.from_args(args, environment=not sandbox)
    systems: Messages = [{"role": "system", "content": text} for text in args.system]
    output = _output(args)
    prompt = read_prompt(args.prompt, sys.stdin)
    with maybe_sandbox(connection, sandbox) as connection:
        if prompt is None:
            from .hints import Situation
            from .interactive import Session

            situation = Situation.from_args(args)
            return Session(args.provider, connection, systems, output, situation).run()
        messages: Messages = [*systems, {"role": "user", "content": prompt}]
        send(args.provider, connection, messages, output)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Run `koala demo`; return the exit code."""
    sandbox = sandbox_wanted(args)
    connection = Connection.from_args(args, environment=not sandbox)
    output = _output(args)
    local = sandbox or connection.endpoint is None
    if local and not sandbox:
        sys.stderr.write(
            f"koala: ${ENDPOINT_VARIABLE} is not set: answering from a sandbox "
            "started in this process (no network)\n"
        )
    if not args.json:
        for message in SEED_CONVERSATION:
            output.out.write(f"{message['role']}: {message['content']}\n")
        output.out.write("assistant: ")
        output.out.flush()
    with maybe_sandbox(connection, local) as connection:
        send(args.provider, connection, list(SEED_CONVERSATION), output)
    return 0


def read_prompt(prompt: str | None, stdin: TextIO | None) -> str | None:
    """Return the prompt: the argument, then piped stdin on a line of its own.

    Returns None when there is neither and stdin is a terminal: the caller then
    starts an interactive session.

    Raises:
        UsageError: Nothing to send (an empty prompt, or empty piped stdin).
    """
    if stdin is not None and is_terminal(stdin):
        if prompt is None:
            return None
        piped = ""
    else:
        piped = stdin.read().rstrip("\r\n") if stdin is not None else ""
    parts = [part for part in (prompt, piped) if part]
    if not parts:
        raise UsageError(
            "nothing to send: give a PROMPT or pipe text on stdin, "
            "or run `koala chat` on a terminal for a session"
        )
    return "\n".join(parts)


def _output(args: argparse.Namespace) -> Output:
    return Output(json_lines=args.json, stream=not args.no_stream)
