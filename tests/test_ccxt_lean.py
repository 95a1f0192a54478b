"""ccxt imported without its other exchanges (`okx_collector.ccxt_lean`), each in a fresh
interpreter: what is imported decides what the packages hold."""

from __future__ import annotations

import json
import subprocess
import sys

REPORT = """
import json, sys
{first}
import ccxt, ccxt.async_support, ccxt.pro
from ccxt.base import errors
from okx_collector import ccxt_lean
loaded = sorted(m for m in sys.modules if m.startswith("ccxt.async_support.")
                and m.count(".") == 2 and m.rsplit(".", 1)[1] in ccxt.async_support.exchanges)
before = len(sys.modules)
binance = ccxt.binance  # another exchange, loaded when asked for
print(json.dumps({{
    "lean": "__getattr__" in vars(ccxt),
    "exchanges_loaded": loaded,
    "okx_is_ccxts": ccxt.async_support.okx.__module__ == "ccxt.async_support.okx",
    "pro_okx_extends_it": issubclass(ccxt.pro.okx, ccxt.async_support.okx),
    "errors_shared": ccxt.async_support.RateLimitExceeded is errors.RateLimitExceeded,
    "version": ccxt.__version__ == ccxt.async_support.__version__,
    "binance": binance.__module__,
    "binance_loaded_now": len(sys.modules) > before,
    "client_is_lean_pro": ccxt_lean.ccxt_pro is ccxt.pro,
}}))
"""


def report(first: str) -> dict[str, object]:
    code = REPORT.format(first=first)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_the_exchange_layer_loads_okx_alone_and_others_on_demand() -> None:
    got = report("import okx_collector.exchange")
    assert got["lean"] is True
    assert got["exchanges_loaded"] == ["ccxt.async_support.okx"]
    assert got["okx_is_ccxts"] and got["pro_okx_extends_it"] and got["errors_shared"]
    assert got["version"] is True
    assert got["binance"] == "ccxt.binance"
    assert got["binance_loaded_now"] is True
    assert got["client_is_lean_pro"] is True


def test_ccxt_imported_first_is_left_whole() -> None:
    got = report("import ccxt.async_support\nimport okx_collector.exchange")
    assert got["lean"] is False
    assert len(got["exchanges_loaded"]) > 50  # type: ignore[arg-type]
    assert got["okx_is_ccxts"] and got["pro_okx_extends_it"] and got["errors_shared"]
    assert got["binance_loaded_now"] is False
