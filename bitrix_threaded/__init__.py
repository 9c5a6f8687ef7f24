"""bitrix_threaded: a sync-native, thread-pool client for the Bitrix24 REST API."""

__version__ = "0.1.0"

__all__ = ["__version__"]
