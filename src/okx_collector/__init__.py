"""okx-collector: complete, exact, crash-safe OKX candle and funding datasets for research."""

__version__ = "0.1.0"
