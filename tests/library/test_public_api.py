"""The public surface: what `koala_chat` exports, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def _import_alone(module: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return module, done.stderr.strip().splitlines()[-1] if done.returncode else ""


def test_every_module_imports_first_in_a_fresh_process() -> None:
    # An import cycle shows only when its modules are imported in one order:
    # the first module a process imports is where it starts. The plugins
    # need their hosts (llm, pytest), which the test extras install.
    package = Path(koala_chat.__file__).parent
    modules = sorted(
        ".".join(
            ("koala_chat", *path.relative_to(package).with_suffix("").parts)
        ).removesuffix(".__init__")
        for path in package.rglob("*.py")
        if path.name != "__main__.py"
    )
    with ThreadPoolExecutor(4) as pool:
        failures = [
            f"{module}: {error}"
            for module, error in pool.map(_import_alone, modules)
            if error
        ]
    assert len(modules) > 100
    assert not failures, failures
