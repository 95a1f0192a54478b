"""Operations: Prometheus metrics, /health and systemd notify for `collect` (docs/operations.md)."""

from okx_collector.ops.run import Ops

__all__ = ["Ops"]
