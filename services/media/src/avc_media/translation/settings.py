"""`AVC_TRANSLATOR_URL` and `AVC_TRANSLATOR_API_KEY` (read by the API, to refuse `translate_to`
when nothing is configured, and by the translation worker, to translate)."""

from __future__ import annotations

from typing import Final

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

NONE: Final = "none"
SCHEMES: Final = (
    "libretranslate+http",
    "libretranslate+https",
    "openai+http",
    "openai+https",
)


class TranslatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVC_TRANSLATOR_", extra="ignore", frozen=True)

    url: str = NONE
    """`none` | `libretranslate+http(s)://host:port` | `openai+http(s)://host:port/v1?model=NAME`."""
    api_key: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip() or NONE
        if value.lower() == NONE:
            return NONE
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in SCHEMES:
            raise ValueError(
                f"AVC_TRANSLATOR_URL must be 'none' or start with one of "
                f"{', '.join(s + '://' for s in SCHEMES)}"
            )
        return value

    @property
    def enabled(self) -> bool:
        """False when no translator is configured: `translate_to` is then refused (422)."""
        return self.url != NONE
