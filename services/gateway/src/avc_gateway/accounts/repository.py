"""Storage of accounts and API keys in the gateway's own database.

Every API-key query is scoped to its account here, so a route cannot reach another account's
key by id. Emails are stored lower-cased; a unique index makes them unique.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast

from avc_common.documents import Collection, DocumentDatabase
from avc_gateway.principal import Plan

ACCOUNTS: Final = "accounts"
API_KEYS: Final = "api_keys"


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    password_hash: str
    plan: Plan
    api_preview: bool
    created_at: datetime
    rate_limits: dict[str, int] = field(default_factory=dict)
    """Per-class per-minute overrides set by the operator."""

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Account:
        return cls(
            id=doc["_id"],
            email=doc["email"],
            password_hash=doc["password_hash"],
            plan=cast(Plan, doc["plan"]),
            api_preview=bool(doc.get("api_preview", False)),
            created_at=doc["created_at"],
            rate_limits={str(k): int(v) for k, v in (doc.get("rate_limits") or {}).items()},
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "email": self.email,
            "password_hash": self.password_hash,
            "plan": self.plan,
            "api_preview": self.api_preview,
            "rate_limits": dict(self.rate_limits),
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class ApiKey:
    id: str
    account_id: str
    name: str
    prefix: str
    key_hash: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ApiKey:
        return cls(
            id=doc["_id"],
            account_id=doc["account_id"],
            name=doc["name"],
            prefix=doc["prefix"],
            key_hash=doc["key_hash"],
            created_at=doc["created_at"],
            last_used_at=doc.get("last_used_at"),
            revoked_at=doc.get("revoked_at"),
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "account_id": self.account_id,
            "name": self.name,
            "prefix": self.prefix,
            "key_hash": self.key_hash,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
        }


class AccountRepository:
    def __init__(self, db: DocumentDatabase) -> None:
        self._col: Collection = db.collection(ACCOUNTS)

    async def ensure_indexes(self) -> None:
        """Creates the unique email index (idempotent)."""
        await self._col.create_index([("email", 1)], unique=True, name="email_unique")

    async def insert(self, account: Account) -> None:
        """Stores a new account; raises DuplicateKey when the email is taken."""
        await self._col.insert_one(account.to_doc())

    async def get(self, account_id: str) -> Account | None:
        """Returns the account with this id, or None."""
        doc = await self._col.find_one({"_id": account_id})
        return Account.from_doc(doc) if doc else None

    async def get_by_email(self, email: str) -> Account | None:
        """Returns the account with this (lower-cased) email, or None."""
        doc = await self._col.find_one({"email": email})
        return Account.from_doc(doc) if doc else None

    async def update(
        self,
        account_id: str,
        *,
        set_fields: Mapping[str, Any] | None = None,
        unset_fields: tuple[str, ...] = (),
    ) -> Account | None:
        """Returns the account after setting/unsetting fields (None when it does not exist)."""
        update: dict[str, Any] = {}
        if set_fields:
            update["$set"] = dict(set_fields)
        if unset_fields:
            update["$unset"] = dict.fromkeys(unset_fields, "")
        if not update:
            return await self.get(account_id)
        doc = await self._col.find_one_and_update({"_id": account_id}, update)
        return Account.from_doc(doc) if doc else None


class ApiKeyRepository:
    def __init__(self, db: DocumentDatabase) -> None:
        self._col: Collection = db.collection(API_KEYS)

    async def ensure_indexes(self) -> None:
        """Creates the unique hash index and the per-account listing index (idempotent)."""
        await self._col.create_index([("key_hash", 1)], unique=True, name="key_hash_unique")
        await self._col.create_index([("account_id", 1), ("created_at", -1)])

    async def insert(self, key: ApiKey) -> None:
        """Stores a new key (only its hash)."""
        await self._col.insert_one(key.to_doc())

    async def get_active_by_hash(self, key_hash: str) -> ApiKey | None:
        """Returns the unrevoked key with this hash, or None."""
        doc = await self._col.find_one({"key_hash": key_hash, "revoked_at": None})
        return ApiKey.from_doc(doc) if doc else None

    async def list_active(self, account_id: str) -> list[ApiKey]:
        """Returns the account's unrevoked keys, newest first."""
        docs = await self._col.find(
            {"account_id": account_id, "revoked_at": None}, sort=[("created_at", -1), ("_id", -1)]
        )
        return [ApiKey.from_doc(doc) for doc in docs]

    async def count_active(self, account_id: str) -> int:
        """Returns how many unrevoked keys the account has."""
        return await self._col.count({"account_id": account_id, "revoked_at": None})

    async def revoke(self, account_id: str, key_id: str, *, at: datetime) -> bool:
        """Returns whether one of the account's active keys was revoked."""
        result = await self._col.update_one(
            {"_id": key_id, "account_id": account_id, "revoked_at": None},
            {"$set": {"revoked_at": at}},
        )
        return result.matched_count == 1

    async def record_last_used(self, key_id: str, at: datetime) -> None:
        """Sets `last_used_at` unless the stored value is already as recent (other replicas)."""
        await self._col.update_one(
            {"_id": key_id, "$or": [{"last_used_at": None}, {"last_used_at": {"$lt": at}}]},
            {"$set": {"last_used_at": at}},
        )
