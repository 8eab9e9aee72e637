"""The public surface: what `koala_chat` exports, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import koala_chat

PROMISED = {
    "Koala",
    "AsyncGeneratorProvider",
    "ProviderModelMixin",
    "Messages",
    "Message",
    "get_random_string",
    "raise_for_status",
    "get_connector",
    "KoalaError",
    "UsageError",
    "KoalaTimeoutError",
}


def test_all_lists_the_promised_names() -> None:
    assert set(koala_chat.__all__) >= PROMISED


def test_every_exported_name_resolves() -> None:
    for name in koala_chat.__all__:
        assert getattr(koala_chat, name) is not None, name


def test_all_error_classes_are_exported() -> None:
    from koala_chat import errors

    assert set(errors.__all__) <= set(koala_chat.__all__)


def test_importing_the_package_does_not_import_aiohttp() -> None:
    code = "import sys, koala_chat; print('aiohttp' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "False", result.stderr
