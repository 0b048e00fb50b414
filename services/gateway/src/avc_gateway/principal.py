"""Who is calling the public API, as the gateway authenticated them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from avc_common.internal_auth import Caller

Plan = Literal["enterprise", "premium", "starter"]
PLANS: tuple[Plan, ...] = ("enterprise", "premium", "starter")
AuthMethod = Literal["api_key", "jwt"]


@dataclass(frozen=True)
class Principal:
    account_id: str
    email: str
    plan: Plan
    api_preview: bool
    method: AuthMethod
    key_id: str | None = None

    @property
    def rate_limit_key(self) -> str:
        """Returns what rate limits count against: the API key, or the account for JWT sessions."""
        return self.key_id if self.method == "api_key" and self.key_id else self.account_id

    @property
    def is_enterprise(self) -> bool:
        return self.plan == "enterprise"

    def caller(self, request_id: str | None) -> Caller:
        """Returns the identity the internal token carries to a service."""
        return Caller(
            account_id=self.account_id,
            plan=self.plan,
            api_preview=self.api_preview,
            key_id=self.key_id,
            request_id=request_id,
        )
