"""The Zenlix helpdesk (ZENLIX 2.x JSON API, providers/zenlix.md). Importing
this package registers the `zenlix` provider."""

from bridges.zenlix.bridge import ZenlixBridge, create_zenlix_bridge
from bridges.zenlix.config import ZenlixSettings

__all__ = ["ZenlixBridge", "ZenlixSettings", "create_zenlix_bridge"]
