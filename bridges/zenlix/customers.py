"""Which Zenlix client a Telegram customer is (providers/zenlix.md): the one
stored already, found by phone or by full name (the server's user search
covers names, logins and phones, not e-mail), or the configured default.
"""

from __future__ import annotations

import re

from bridges.base import CustomerIdentity
from bridges.errors import NotFound
from bridges.zenlix.config import HASH_PATTERN, ZenlixSettings
from bridges.zenlix.mapping import name_key
from bridges.zenlix.reader import ZenlixReader

PROVIDER = "zenlix"


class ClientFinder:
    def __init__(self, reader: ZenlixReader, settings: ZenlixSettings) -> None:
        self._reader = reader
        self.settings = settings
        # Customers no client matched: asked for their contact next time.
        self.unmatched: set[str] = set()

    def missing_contact(self, customer: CustomerIdentity) -> bool:
        """Zenlix's user search covers names, logins and phones, not e-mail:
        without a phone, a plausible full name or a default client there is
        nothing to find the customer by."""
        if customer.remote_customer_id or customer.phone or self.settings.default_client:
            return False
        if customer.customer_ref in self.unmatched:
            return True
        return not plausible_full_name(customer.full_name)

    async def client_for(self, customer: CustomerIdentity) -> str:
        """The customer's Zenlix client: known already, found by phone or by
        full name (the server's search covers no e-mail), or the default."""
        if customer.remote_customer_id and HASH_PATTERN.match(customer.remote_customer_id):
            return customer.remote_customer_id
        found = None
        if customer.phone:
            found = await self._client_by_phone(customer.phone)
        if found is None and plausible_full_name(customer.full_name):
            found = await self._client_by_name(customer.full_name)
        if found is not None:
            return found
        if self.settings.default_client:
            return self.settings.default_client
        self.unmatched.add(customer.customer_ref)
        raise NotFound("no Zenlix client matches this customer: they can share their phone "
                       "number, or set ZENLIX_DEFAULT_CLIENT", provider=PROVIDER)

    async def _client_by_phone(self, phone: str) -> str | None:
        digits = re.sub(r"\D", "", phone)[-10:]
        if len(digits) < 6:
            return None
        # `%` is a wildcard of the server's search: it lets "79161234567"
        # find "+7 (916) 123-45-67". Each hit is checked against its `tel`.
        candidates = await self._reader.search_users("%".join(digits))
        matches = []
        for candidate in candidates:
            if candidate.is_client != 1 or not candidate.user_hash:
                continue
            info = await self._reader.user_info(candidate.user_hash)
            if re.sub(r"\D", "", info.tel).endswith(digits):
                matches.append(candidate.user_hash)
        return matches[0] if len(matches) == 1 else None

    async def _client_by_name(self, full_name: str) -> str | None:
        wanted = name_key(full_name)
        words = full_name.split()
        # Zenlix keeps "Surname Name": search the whole name, then the last word.
        for query in dict.fromkeys([" ".join(words), words[-1]]):
            found = [user.user_hash for user in await self._reader.search_users(query)
                     if user.is_client == 1 and user.user_hash and name_key(user.fio) == wanted]
            if found:
                return found[0] if len(found) == 1 else None
        return None


def plausible_full_name(name: str) -> bool:
    """Two words of two letters or more: one first name alone would match
    too many clients, or the wrong one."""
    return sum(1 for word in name.split() if sum(c.isalpha() for c in word) >= 2) >= 2
