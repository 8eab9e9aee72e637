"""`koala image`: images from KoalaImages, written to files.

Each image is fetched once it is finished (the service answers its URL first)
and written to `--out` as a file named from the prompt and a number, never
over an existing file. The paths are printed, one per line, or with `--json`
one JSON object with the URLs, alt texts and paths. On a terminal, stderr
shows how many images are ready. The exit codes are `koala chat`'s.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from .. import defaults
from .._args import Parser, Subparsers, add_command, positive_seconds
from ..errors import UsageError
from .output import is_terminal

if TYPE_CHECKING:
    from ..providers.images import GeneratedImage

__all__ = ["add_parser", "file_name", "run", "save"]

EPILOG = f"""\
Each image costs credits of the account behind the key (docs/images.md). The
images go to --out (default: the current directory) as PROMPT-WORDS-N.png,
N the first number no file has yet.

examples:
  koala image "a koala in a eucalyptus tree"
  koala image -n 4 --style watercolor --out pictures "a koala"
  koala image --model gpt-image-2 --quality high --size 1536x640 "a koala"
  koala image --json "a koala" | jq -r '.images[].alt'

environment:
  {defaults.API_KEY_VARIABLE}          the key; --api-key-file wins over it
  {defaults.IMAGES_ENDPOINT_VARIABLE}  the image API; --endpoint wins over it. With
                         neither: the origin of {defaults.ENDPOINT_VARIABLE} (else
                         https://koala.sh) with {defaults.IMAGES_PATH}
"""

#: The longest stem taken from the prompt.
_STEM_LENGTH: Final = 48
_NOT_WORD: Final = re.compile(r"[^a-z0-9]+")
#: File types by their first bytes.
_MAGIC: Final = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF8", ".gif"),
    (b"RIFF", ".webp"),
)


def add_parser(subparsers: Subparsers) -> None:
    """Register `image`."""
    add_command(
        subparsers,
        "image",
        summary="make images with KoalaImages and save them",
        description="Ask KoalaImages for images of PROMPT and write them to files.",
        epilog=EPILOG,
        add_arguments=_add_arguments,
        run=run,
    )


def _count(text: str) -> int:
    if text.isdigit() and 1 <= int(text) <= defaults.IMAGES_MAX_COUNT:
        return int(text)
    raise argparse.ArgumentTypeError(
        f"expected a whole number from 1 to {defaults.IMAGES_MAX_COUNT}, got {text!r}"
    )


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    assert isinstance(parser, Parser)
    parser.add_argument("prompt", metavar="PROMPT", help="what the images show")
    parser.add_argument(
        "-n", type=_count, default=1, metavar="N", help="how many images, 1 to 4"
    )
    parser.add_argument("--size", metavar="WxH", help="e.g. 1024x1024 (the default)")
    parser.add_argument(
        "--style",
        choices=defaults.IMAGE_STYLES,
        metavar="STYLE",
        help=f"{', '.join(defaults.IMAGE_STYLES)} (default: photo)",
    )
    parser.add_argument(
        "-m",
        "--model",
        choices=defaults.IMAGE_MODELS,
        metavar="NAME",
        help=f"{', '.join(defaults.IMAGE_MODELS)} (default: "
        f"{defaults.IMAGE_MODELS[0]}; the last two are deprecated)",
    )
    parser.add_argument(
        "--quality",
        choices=defaults.IMAGE_QUALITIES,
        metavar="Q",
        help=f"{', '.join(defaults.IMAGE_QUALITIES)}, for "
        f"{defaults.IMAGE_QUALITY_MODEL} only; medium and high cost more",
    )
    parser.add_argument(
        "--out", metavar="DIR", default=".", help="where to write the images"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"images": [{"url", "alt", "path"}, ...]} instead of the paths',
    )
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--endpoint",
        metavar="URL",
        help=f"the image API (default: ${defaults.IMAGES_ENDPOINT_VARIABLE}, else "
        f"{defaults.IMAGES_PATH} on the chat endpoint's origin)",
    )
    group.add_argument("--proxy", metavar="URL", help="go through this proxy")
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=defaults.IMAGE_FETCH_TIMEOUT,
        help="time limit of the request, and of each image's fetch "
        f"(default: {defaults.IMAGE_FETCH_TIMEOUT:g})",
    )
    group.add_argument(
        "--api-key-file",
        metavar="PATH",
        help=f"read the key from this file (default: ${defaults.API_KEY_VARIABLE})",
    )


def run(args: argparse.Namespace) -> int:
    """Make the images, write them, print where; return 0.

    Raises:
        UsageError: bad options, no key, or `--out` is not a directory.
        KoalaError: the request or a fetch failed (see `exits.py`).
    """
    import asyncio

    from .options import configured_key

    key = configured_key(args.api_key_file)
    if key is None:
        raise UsageError(
            "koala image needs the key of koala.sh's official API: set "
            f"{defaults.API_KEY_VARIABLE} or give --api-key-file PATH"
        )
    out = Path(args.out)
    if not out.is_dir():
        raise UsageError(f"--out {args.out!r} is not a directory")
    images, paths = asyncio.run(_make(args, key, out, sys.stderr))
    if args.json:
        import json

        listed = [
            {"url": image.url, "alt": image.alt, "path": str(path)}
            for image, path in zip(images, paths, strict=True)
        ]
        sys.stdout.write(json.dumps({"images": listed}, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write("".join(f"{path}\n" for path in paths))
    sys.stdout.flush()
    return 0


async def _make(
    args: argparse.Namespace, key: object, out: Path, err: TextIO
) -> tuple[list[GeneratedImage], list[Path]]:
    """Generate, fetch every image at once, then save them in their order.

    The first failed fetch cancels the others and is raised.
    """
    from ..providers.images import KoalaImages

    progress = _Progress(is_terminal(err), err)
    progress.show(f"asking KoalaImages for {args.n} image(s)")
    try:
        images = await KoalaImages.create_images(
            args.prompt,
            n=args.n,
            size=args.size,
            style=args.style,
            model=args.model,
            quality=args.quality,
            api_key=key,
            api_endpoint=args.endpoint or None,
            proxy=args.proxy,
            timeout=args.timeout,
        )
        progress.show(f"0 of {len(images)} images ready")
        datas = await KoalaImages.fetch_images(
            [image.url for image in images],
            on_fetched=lambda done: progress.show(
                f"{done} of {len(images)} images ready"
            ),
            timeout=args.timeout,
            proxy=args.proxy,
        )
    finally:
        progress.clear()
    return images, [save(out, args.prompt, data) for data in datas]


class _Progress:
    """One line on stderr that says how far things are; nothing off a terminal."""

    def __init__(self, enabled: bool, err: TextIO) -> None:
        self.enabled = enabled
        self.err = err
        self.width = 0

    def show(self, text: str) -> None:
        if self.enabled:
            self.err.write("\r" + text.ljust(self.width))
            self.err.flush()
            self.width = max(self.width, len(text))

    def clear(self) -> None:
        if self.enabled and self.width:
            self.err.write("\r" + " " * self.width + "\r")
            self.err.flush()


def file_name(prompt: str, number: int, data: bytes) -> str:
    """Return the file name of image `number` of `prompt`: words, number, type.

    The words are the prompt's letters and digits folded to ASCII, lowercase,
    joined by `-`, at most 48 characters (`image` when none are left).
    """
    folded = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    stem = _NOT_WORD.sub("-", folded.lower()).strip("-")[:_STEM_LENGTH].rstrip("-")
    suffix = next((ext for magic, ext in _MAGIC if data.startswith(magic)), ".img")
    return f"{stem or 'image'}-{number}{suffix}"


def save(directory: Path, prompt: str, data: bytes) -> Path:
    """Write `data` to the first free `file_name` in `directory`; return its path.

    Never overwrites: each name is created exclusively (`x` mode), so a file
    that appears meanwhile is skipped too.

    Raises:
        OSError: the directory cannot be written.
    """
    number = 1
    while True:
        path = directory / file_name(prompt, number, data)
        try:
            with path.open("xb") as file:
                file.write(data)
        except FileExistsError:
            number += 1
            continue
        return path
