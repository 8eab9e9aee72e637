"""The contract package: the one home of what the client and the server share."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import koala_chat

PACKAGE = Path(koala_chat.__file__).parent


def imported_modules(package: str) -> set[str]:
    """Return the koala_chat modules that the modules of `package` import."""
    found: set[str] = set()
    for path in (PACKAGE / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                parent = ["koala_chat", package][: 3 - node.level]
                found.add(".".join([*parent, *filter(None, [node.module])]))
            elif isinstance(node, ast.ImportFrom):
                found.add(node.module or "")
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("koala_chat")}


def test_the_server_imports_nothing_of_the_client() -> None:
    imports = imported_modules("server")
    assert "koala_chat._contract.replies" in imports  # the scan sees imports
    assert not {name for name in imports if name.startswith("koala_chat.client")}


def test_the_contract_imports_neither_client_nor_server() -> None:
    imports = imported_modules("_contract")
    assert "koala_chat.messages" in imports
    assert not {
        name
        for name in imports
        if name.startswith(("koala_chat.client", "koala_chat.server"))
    }


def test_importing_the_contract_does_not_import_aiohttp() -> None:
    code = "import sys, koala_chat._contract.replies; print('aiohttp' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.strip() == "False", result.stderr


# The modules of Koala's dialects, which only the providers and the command line
# may name (the command line speaks of dialects to its user).
_DIALECT_MODULES = {
    "koala_chat.providers.koala",
    "koala_chat.providers.dialects",
    "koala_chat.providers.settings",
    "koala_chat.providers.negotiation",
}


def names_imported(path: Path, package: str) -> set[str]:
    """Return `module` and `module.name` for each import of the file at `path`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            parent = ["koala_chat", package][: 3 - node.level] if node.level else []
            module = ".".join([*parent, *filter(None, [node.module])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_only_the_server_config_names_the_default_provider() -> None:
    # Capabilities are data the provider declares (_contract/capabilities.py):
    # no layer above the providers asks for Koala by name or by class.
    offenders = []
    seen = set()
    for package in ("server", "client", "_contract"):
        for path in (PACKAGE / package).glob("*.py"):
            names = names_imported(path, package)
            seen |= names
            text = path.read_text(encoding="utf-8")
            if path.relative_to(PACKAGE).as_posix() == "server/config.py":
                continue
            if "koala_chat.providers.Koala" in names or names & _DIALECT_MODULES:
                offenders.append(f"{path.name}: imports Koala or a dialect module")
            if "issubclass(" in text:
                offenders.append(f"{path.name}: asks issubclass")
    assert "koala_chat._contract.capabilities.capabilities_of" in seen  # it scans
    assert offenders == []
