"""`python -m okx_collector` and the `okx-collector` console script.

Importing the CLI (ccxt, pyarrow) takes about a second; a Ctrl-C in that window must still end
with one line, not a traceback, so the import itself sits inside the guard.
"""

import os
import signal
import sys

# Read by Arrow's bundled mimalloc when pyarrow loads (the CLI import below), so set here: its
# arena otherwise commits 4 MB up front, resident in every command for the process's life,
# although the collector allocates its Arrow buffers elsewhere (okx_collector.memory). Memory is
# then committed as it is used. The environment still wins.
os.environ.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)  # nothing has been done yet: a clean stop


def run() -> None:
    # Until a command starts (imports take about a second), SIGTERM is a clean, silent exit.
    signal.signal(signal.SIGTERM, _stop_before_start)
    try:
        from okx_collector.cli import main

        main()
    except KeyboardInterrupt:
        print("okx-collector: error: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
