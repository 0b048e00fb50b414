"""Renamed environment variables keep working for one release, with a logged warning.

A settings class lists its old names (`{"AVC_PLAYBACK_SECRET": "playback_secret"}`: old
variable -> field) by deriving from `RenamableSettings`, which plugs `DeprecatedEnvSource` in
after its own environment source, so the new name wins when both are set; variables that no
longer do anything can be listed as `removed_env` to say so at start instead of being silently
ignored:

    class MediaSettings(RenamableSettings):
        renamed_env: ClassVar[Mapping[str, str]] = {"AVC_PLAYBACK_SECRET": "playback_secret"}
        removed_env: ClassVar[tuple[str, ...]] = ("AVC_MEDIA_FFPROBE_PATH",)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from avc_common.logging import get_logger

log = get_logger(__name__)


class DeprecatedEnvSource(PydanticBaseSettingsSource):
    """Reads fields from their old environment variable names, warning for each one used."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        *,
        renamed: Mapping[str, str],
        removed: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(settings_cls)
        unknown = set(renamed.values()) - set(settings_cls.model_fields)
        if unknown:
            raise ValueError(f"renamed to fields that do not exist: {sorted(unknown)}")
        self._renamed = dict(renamed)
        self._removed = tuple(removed)
        self._environ = environ

    def new_name(self, field_name: str) -> str:
        """Returns the variable the field is read from now."""
        return f"{self.config.get('env_prefix', '')}{field_name}".upper()

    def _environment(self) -> dict[str, str]:
        environ = os.environ if self._environ is None else self._environ
        if self.config.get("case_sensitive", False):
            return dict(environ)
        return {name.upper(): value for name, value in environ.items()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads every old name at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        environ = self._environment()
        values: dict[str, Any] = {}
        for old, field_name in self._renamed.items():
            value = environ.get(old.upper())
            if value is None:
                continue
            new = self.new_name(field_name)
            if new in environ:
                log.warning("deprecated_env_ignored", variable=old, replaced_by=new)
                continue
            log.warning(
                "deprecated_env",
                variable=old,
                replaced_by=new,
                hint=f"rename {old} to {new}: the old name stops working in the next release",
            )
            values[field_name] = value
        for name in self._removed:
            if name.upper() in environ:
                log.warning("removed_env_ignored", variable=name, hint="no longer used: unset it")
        return values


def with_deprecated_env(
    settings_cls: type[BaseSettings],
    sources: tuple[
        PydanticBaseSettingsSource,
        PydanticBaseSettingsSource,
        PydanticBaseSettingsSource,
        PydanticBaseSettingsSource,
    ],
    *,
    renamed: Mapping[str, str],
    removed: Iterable[str] = (),
) -> tuple[PydanticBaseSettingsSource, ...]:
    """Returns the sources of `settings_customise_sources` (init, env, dotenv, secrets files)
    with the old names read right after the environment: below it, above everything else."""
    init_settings, env_settings, dotenv_settings, file_secret_settings = sources
    old_names = DeprecatedEnvSource(settings_cls, renamed=renamed, removed=removed)
    return init_settings, env_settings, old_names, dotenv_settings, file_secret_settings


class RenamableSettings(BaseSettings):
    """Settings whose fields may also be read from old variable names (`renamed_env`)."""

    renamed_env: ClassVar[Mapping[str, str]] = {}
    removed_env: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return with_deprecated_env(
            settings_cls,
            (init_settings, env_settings, dotenv_settings, file_secret_settings),
            renamed=cls.renamed_env,
            removed=cls.removed_env,
        )
