"""Dashboard sessions: HS256 JWTs issued by `POST /api/v1/auth/login`."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import jwt

from avc_common.errors import Unauthorized
from avc_common.ids import is_id

ALGORITHM: Final = "HS256"
# Fixed here, never read from the token: `alg: none` and algorithm confusion are refused.
_ALGORITHMS: Final = [ALGORITHM]
_REQUIRED: Final = ["exp", "iat", "iss", "aud", "sub"]
# Small clock differences between gateway replicas.
_LEEWAY_SECONDS: Final = 5
# RFC 6750 challenges, so HTTP clients know to log in again.
_EXPIRED_CHALLENGE: Final = (
    'Bearer realm="avcaption", error="invalid_token", error_description="expired"'
)
_INVALID_CHALLENGE: Final = 'Bearer realm="avcaption", error="invalid_token"'


class TokenExpired(Unauthorized):
    code: ClassVar[str] = "token_expired"
    default_message: ClassVar[str] = "The session token has expired; log in again."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": _EXPIRED_CHALLENGE})


class InvalidToken(Unauthorized):
    code: ClassVar[str] = "invalid_token"
    default_message: ClassVar[str] = "The session token is not valid."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": _INVALID_CHALLENGE})


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class TokenCodec:
    """Issues and verifies session tokens naming an account (`sub`)."""

    def __init__(self, *, secret: str, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._secret = secret.encode()
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds

    def issue(self, account_id: str) -> IssuedToken:
        """Returns a signed token for `account_id`, valid for the configured TTL."""
        now = int(time.time())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": account_id,
            "iat": now,
            "exp": now + self._ttl,
            "jti": secrets.token_urlsafe(12),
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), self._ttl)

    def verify(self, token: str) -> str:
        """Returns the account id the token names; raises TokenExpired or InvalidToken."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=_ALGORITHMS,
                audience=self._audience,
                issuer=self._issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.PyJWTError:
            raise InvalidToken() from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not is_id(sub, "acct"):
            raise InvalidToken()
        return sub
