"""iqstore, a customer-side provider (its public chat API), with optional
agent replies through its internal API. Importing this package registers the
`iqstore` provider."""

from bridges.iqstore.bridge import IqstoreBridge, create_iqstore_bridge

__all__ = ["IqstoreBridge", "create_iqstore_bridge"]
