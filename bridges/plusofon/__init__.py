"""Plusofon, a customer-side provider. Importing this package registers the
`plusofon` provider."""

from bridges.plusofon.bridge import PlusofonBridge, create_plusofon_bridge

__all__ = ["PlusofonBridge", "create_plusofon_bridge"]
