"""The Omnidesk bridge (providers/omnidesk.md). Importing this package
registers the `omnidesk` provider."""

from bridges.omnidesk.bridge import OmnideskBridge, create_omnidesk_bridge
from bridges.omnidesk.config import OmnideskSettings

__all__ = ["OmnideskBridge", "OmnideskSettings", "create_omnidesk_bridge"]
