"""Identity logic: accounts, passwords, sessions, API keys and per-account rate limits."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import ClassVar, Final, cast, get_args

from avc_common.documents import DocumentDatabase, DuplicateKey
from avc_common.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from avc_common.ids import is_id, new_id
from avc_common.timeutil import utcnow
from avc_gateway.accounts.api_keys import (
    ApiKeyHasher,
    InvalidApiKey,
    LastUsedTracker,
    display_prefix,
    is_well_formed,
    new_api_key,
)
from avc_gateway.accounts.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, Passwords
from avc_gateway.accounts.repository import Account, AccountRepository, ApiKey, ApiKeyRepository
from avc_gateway.accounts.tokens import InvalidToken, IssuedToken, TokenCodec
from avc_gateway.config import ACCOUNT_RATE_CLASSES, AccountRateClass, GatewaySettings
from avc_gateway.principal import PLANS, Plan
from avc_gateway.secrets_store import GatewaySecrets

_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+")
MAX_EMAIL_LENGTH: Final = 320


class InvalidCredentials(Unauthorized):
    code: ClassVar[str] = "invalid_credentials"
    default_message: ClassVar[str] = "Wrong email or password."


class EmailTaken(Conflict):
    code: ClassVar[str] = "email_taken"
    default_message: ClassVar[str] = "An account with this email already exists."


class ApiKeyLimitReached(Conflict):
    code: ClassVar[str] = "api_key_limit_reached"
    default_message: ClassVar[str] = "The account holds as many API keys as it may."


class AccountNotFound(NotFound):
    default_message: ClassVar[str] = "No account has this email."


def normalize_email(email: str) -> str:
    """Returns the form emails are stored and looked up in (trimmed, lower-cased)."""
    return email.strip().lower()


def check_plan(plan: str) -> Plan:
    """Returns `plan` as a Plan; raises ValidationFailed for anything else."""
    if plan not in get_args(Plan):
        raise ValidationFailed(f"Unknown plan {plan!r}; choose one of: {', '.join(PLANS)}.")
    return cast(Plan, plan)


class Identity:
    """Accounts and API keys of one gateway (also used by `avcaption admin`)."""

    def __init__(
        self,
        *,
        accounts: AccountRepository,
        api_keys: ApiKeyRepository,
        passwords: Passwords,
        tokens: TokenCodec,
        key_hasher: ApiKeyHasher,
        settings: GatewaySettings,
    ) -> None:
        self.accounts = accounts
        self.api_keys = api_keys
        self.passwords = passwords
        self.tokens = tokens
        self.key_hasher = key_hasher
        self.settings = settings
        self.last_used = LastUsedTracker(
            api_keys.record_last_used, interval_seconds=settings.last_used_flush_seconds
        )

    # accounts

    async def create_account(
        self, *, email: str, password: str, plan: str, api_preview: bool = False
    ) -> Account:
        """Returns the new account; raises EmailTaken or ValidationFailed."""
        email = normalize_email(email)
        if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
            raise ValidationFailed(f"{email!r} is not an email address.")
        check_password(password)
        account = Account(
            id=new_id("acct"),
            email=email,
            password_hash=await self.passwords.hash(password),
            plan=check_plan(plan),
            api_preview=api_preview,
            created_at=utcnow(),
        )
        try:
            await self.accounts.insert(account)
        except DuplicateKey:
            raise EmailTaken(f"An account with the email {email!r} already exists.") from None
        return account

    async def account_by_email(self, email: str) -> Account:
        """Returns the account with this email; raises AccountNotFound."""
        account = await self.accounts.get_by_email(normalize_email(email))
        if account is None:
            raise AccountNotFound(f"No account has the email {normalize_email(email)!r}.")
        return account

    async def set_plan(self, *, email: str, plan: str, api_preview: bool | None = None) -> Account:
        """Returns the account with its new plan (and API preview flag, when given)."""
        account = await self.account_by_email(email)
        fields: dict[str, object] = {"plan": check_plan(plan)}
        if api_preview is not None:
            fields["api_preview"] = api_preview
        return await self._update(account, set_fields=fields)

    async def set_rate_limit(
        self, *, email: str, rate_class: str, per_minute: int | None
    ) -> Account:
        """Returns the account with the class's override set (or dropped for None)."""
        if rate_class not in ACCOUNT_RATE_CLASSES:
            raise ValidationFailed(
                f"Unknown rate class {rate_class!r}; choose one of: "
                f"{', '.join(ACCOUNT_RATE_CLASSES)}."
            )
        if per_minute is not None and per_minute < 1:
            raise ValidationFailed("A rate limit must be at least 1 request per minute.")
        account = await self.account_by_email(email)
        path = f"rate_limits.{rate_class}"
        if per_minute is None:
            return await self._update(account, unset_fields=(path,))
        return await self._update(account, set_fields={path: per_minute})

    def effective_rate_limits(self, account: Account) -> dict[AccountRateClass, int]:
        """Returns the per-minute limit of each per-account class, overrides included."""
        limits = self.settings.account_rate_limits()
        for rate_class in ACCOUNT_RATE_CLASSES:
            override = account.rate_limits.get(rate_class)
            if override is not None:
                limits[rate_class] = override
        return limits

    async def _update(
        self,
        account: Account,
        *,
        set_fields: dict[str, object] | None = None,
        unset_fields: tuple[str, ...] = (),
    ) -> Account:
        updated = await self.accounts.update(
            account.id, set_fields=set_fields, unset_fields=unset_fields
        )
        if updated is None:
            raise AccountNotFound()
        return updated

    # sessions

    async def login(self, *, email: str, password: str) -> IssuedToken:
        """Returns a session token; raises InvalidCredentials, the same way for a wrong email
        and a wrong password (and in about the same time)."""
        account = await self.accounts.get_by_email(normalize_email(email))
        if account is None:
            await self.passwords.verify_dummy(password)
            raise InvalidCredentials()
        ok, new_hash = await self.passwords.verify(password, account.password_hash)
        if not ok:
            raise InvalidCredentials()
        if new_hash is not None:
            # The hash parameters were raised since this password was set.
            await self.accounts.update(account.id, set_fields={"password_hash": new_hash})
        return self.tokens.issue(account.id)

    async def account_for_token(self, token: str) -> Account:
        """Returns the account a session token names; raises TokenExpired or InvalidToken."""
        account = await self.accounts.get(self.tokens.verify(token))
        if account is None:
            raise InvalidToken()
        return account

    # API keys

    async def account_for_api_key(self, key: str) -> tuple[Account, ApiKey]:
        """Returns the key's account and record; raises InvalidApiKey (malformed, unknown or
        revoked). Always asks the database, so a revocation counts at once on every replica."""
        if not is_well_formed(key):
            raise InvalidApiKey("The API key is malformed: expected avc_ and 64 lowercase hex.")
        record = await self.api_keys.get_active_by_hash(self.key_hasher.hash(key))
        if record is None:
            raise InvalidApiKey("The API key is unknown or has been revoked.")
        account = await self.accounts.get(record.account_id)
        if account is None:
            raise InvalidApiKey("The API key is unknown or has been revoked.")
        self.last_used.touch(record.id, utcnow())
        return account, record

    async def create_api_key(self, *, account_id: str, name: str) -> tuple[ApiKey, str]:
        """Returns the stored record and the key itself (which is not stored)."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise ValidationFailed("An API key name is 1 to 100 characters.")
        # Checked, then inserted: concurrent creations may pass the cap by a few, which is
        # all right for a bound against unbounded growth.
        cap = self.settings.max_api_keys_per_account
        if await self.api_keys.count_active(account_id) >= cap:
            raise ApiKeyLimitReached(
                f"An account may hold at most {cap} API keys; revoke one to make room."
            )
        key = new_api_key()
        record = ApiKey(
            id=new_id("key"),
            account_id=account_id,
            name=name,
            prefix=display_prefix(key),
            key_hash=self.key_hasher.hash(key),
            created_at=utcnow(),
        )
        await self.api_keys.insert(record)
        return record, key

    async def list_api_keys(self, *, account_id: str) -> list[ApiKey]:
        """Returns the account's active keys, newest first, with uses not flushed yet."""
        keys = await self.api_keys.list_active(account_id)
        out = []
        for key in keys:
            pending = self.last_used.pending(key.id)
            if pending is not None and (key.last_used_at is None or pending > key.last_used_at):
                key = replace(key, last_used_at=pending)
            out.append(key)
        return out

    async def revoke_api_key(self, *, account_id: str, key_id: str) -> None:
        """Revokes one of the account's keys; raises NotFound for any other id."""
        if not is_id(key_id, "key") or not await self.api_keys.revoke(
            account_id, key_id, at=utcnow()
        ):
            raise NotFound("API key not found.")


def check_password(password: str) -> None:
    """Raises ValidationFailed unless the password is long enough (and not absurdly long)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(f"A password has at most {MAX_PASSWORD_LENGTH} characters.")


async def open_identity(
    db: DocumentDatabase, *, settings: GatewaySettings, secrets: GatewaySecrets
) -> Identity:
    """Returns the identity store on `db`, its indexes created."""
    identity = Identity(
        accounts=AccountRepository(db),
        api_keys=ApiKeyRepository(db),
        passwords=Passwords(
            time_cost=settings.password_hash_time_cost,
            memory_kib=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        ),
        tokens=TokenCodec(
            secret=secrets.jwt_secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.jwt_ttl_seconds,
        ),
        key_hasher=ApiKeyHasher(secrets.api_key_secret),
        settings=settings,
    )
    await identity.accounts.ensure_indexes()
    await identity.api_keys.ensure_indexes()
    return identity
