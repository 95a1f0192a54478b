"""An instrument's feature files opened for an in-place update, on first use."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from okx_collector.qlib_export.files import Ident, PatchedFile, ident
from okx_collector.qlib_export.syncer import Syncer


class Patcher:
    """Opens an instrument's feature files for patching on first use: resized, header set."""

    def __init__(
        self,
        out: Path,
        inst_id: str,
        first: int,
        step: int,
        bars: int,
        header: int | None,
        rel: Callable[[str, str], str],
        syncer: Syncer,
    ) -> None:
        self._out = out
        self._syncer = syncer
        self._inst_id = inst_id
        self._first = first  # open time of the first bar
        self._step = step
        self._bars = bars  # bars the files hold after the update
        self.header = header  # new start index, None if it did not change
        self._rel = rel  # (inst_id, field) -> relative path
        self.opened: dict[str, PatchedFile] = {}  # field -> open file
        self.before: dict[str, Ident | None] = {}  # field -> the file's identity before opening
        self._stack = contextlib.ExitStack()  # closes (and fsyncs) them

    def __enter__(self) -> Patcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)

    def get(self, field: str) -> PatchedFile:
        f = self.opened.get(field)
        if f is None:
            path = self._out / self._rel(self._inst_id, field)
            self.before[field] = ident(path)
            f = self._stack.enter_context(PatchedFile(path, self._first, self._step, self._syncer))
            self.opened[field] = f
            f.resize(self._bars)
            if self.header is not None:
                f.set_header(self.header)
        return f
