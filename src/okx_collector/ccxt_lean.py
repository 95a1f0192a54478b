"""Import ccxt without its hundred other exchanges: ~70 MB less for every collector process.

`import ccxt.async_support` runs the package `__init__` files of `ccxt` and `ccxt.async_support`
(and `ccxt.pro`), which import each of the ~100 exchanges ccxt supports, sync and async: 400
modules, ~85 MB of a process that talks to one exchange (ccxt issue #29573, open). `install()`
runs those same `__init__` files with the exchange imports left out, and makes the packages
import an exchange when it is first asked for (a module `__getattr__`, PEP 562): `ccxt.binance`
still works, it is only loaded later. Everything else the packages define (errors, `Exchange`,
precision helpers, `__version__`, `exchanges`) is defined by ccxt's own code, unchanged.

It must run before anything imports ccxt; if ccxt is imported already, or its layout is not what
this expects, it does nothing and the normal import follows (correct, only larger). This module
is where the project imports ccxt from (`ccxt_async`, `ccxt_pro`), so that it runs first.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
import types
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PACKAGES = ("ccxt", "ccxt.async_support", "ccxt.pro")
# ccxt's `__init__` lines that import an exchange, `from ccxt.pro.okx import okx` followed by
# flake8's unused-import marker (the module and the class share the exchange's id).
_EXCHANGE_IMPORT = re.compile(r"^from ([\w.]+)\.(\w+) import (\w+)\s+# noqa: F401\s*$")


def install() -> bool:
    """Make `ccxt`, `ccxt.async_support` and `ccxt.pro` lean packages (exchanges loaded on first
    use); whether it did (False: ccxt is imported already, or could not be made lean)."""
    if any(name in sys.modules for name in PACKAGES):
        return False
    try:
        spec = importlib.util.find_spec("ccxt")
        if spec is None or spec.origin is None:
            return False
        root = Path(spec.origin).parent
        for name in PACKAGES:
            _lean_package(name, root.joinpath(*name.split(".")[1:]))
    except Exception as exc:  # any surprise in ccxt's layout: the normal import, as before
        for name in PACKAGES:
            sys.modules.pop(name, None)
        log.debug("ccxt imported whole (%s: %s)", type(exc).__name__, exc)
        return False
    return True


def _lean_package(name: str, folder: Path) -> None:
    init = folder / "__init__.py"
    lazy: dict[str, str] = {}  # attribute -> the module defining it
    lines = []
    for line in init.read_text(encoding="utf-8").splitlines():
        found = _EXCHANGE_IMPORT.match(line)
        if found and found.group(1) == name and found.group(2) == found.group(3):
            lazy[found.group(3)] = f"{name}.{found.group(2)}"
            line = ""  # (keeps line numbers in tracebacks)
        lines.append(line)
    if not lazy:
        raise ImportError(f"no exchange imports found in {init}")
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(folder)]
    )
    if spec is None:
        raise ImportError(f"no import spec for {init}")
    module = importlib.util.module_from_spec(spec)
    module.__getattr__ = _loader(name, lazy)  # type: ignore[method-assign]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    exec(compile("\n".join(lines), str(init), "exec"), module.__dict__)  # noqa: S102


def _loader(package: str, lazy: dict[str, str]) -> Any:
    def __getattr__(attr: str) -> Any:  # PEP 562: called for names the module lacks
        target = lazy.get(attr)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        value = getattr(importlib.import_module(target), attr)
        module: types.ModuleType = sys.modules[package]
        setattr(module, attr, value)
        return value

    return __getattr__


install()

import ccxt.async_support as ccxt_async  # noqa: E402  (after install)

try:  # ccxt.pro ships with ccxt >= 4, but a trimmed install may lack it (or its websocket deps).
    import ccxt.pro as ccxt_pro

    WS_IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - depends on the installation
    ccxt_pro = None
    WS_IMPORT_ERROR = str(exc)

__all__ = ["WS_IMPORT_ERROR", "ccxt_async", "ccxt_pro", "install"]
