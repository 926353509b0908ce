"""The built-in local desk: the database is the helpdesk. Importing this
package registers the `local` provider."""

from bridges.local.bridge import LocalDeskBridge, create_local_bridge
from bridges.local.models import LocalDeskBase

__all__ = ["LocalDeskBase", "LocalDeskBridge", "create_local_bridge"]
