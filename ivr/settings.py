"""The one Settings class: every knob, read from the environment (or a local .env file).

It refuses what would make the hotline insecure rather than defaulting around it:
there is no default Twilio auth token and no switch that turns signature checks off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AnyHttpUrl, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ivr.exceptions import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Tokens that appear in tutorials and example files; a production hotline must not run on one.
_PLACEHOLDER_TOKENS = {"changeme", "your_auth_token", "secret", "token", "test", "xxxxxxxx"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = Field(
        default=f"sqlite:///{PROJECT_ROOT / 'ivr.sqlite3'}",
        validation_alias="IVR_DATABASE_URL",
    )
    twilio_auth_token: Annotated[str, Field(validation_alias="TWILIO_AUTH_TOKEN", repr=False)]
    twilio_account_sid: str = Field(default="", validation_alias="TWILIO_ACCOUNT_SID")
    public_url: AnyHttpUrl = Field(validation_alias="IVR_PUBLIC_URL")
    routes: Path = Field(
        default=PROJECT_ROOT / "routes" / "hotline.yaml", validation_alias="IVR_ROUTES"
    )
    prompts_dir: Path = Field(default=PROJECT_ROOT / "prompts", validation_alias="IVR_PROMPTS")
    migrations_dir: Path = Field(
        default=PROJECT_ROOT / "migrations", validation_alias="IVR_MIGRATIONS"
    )
    # Played between hold messages; Twilio's own public hold-music bucket by default.
    hold_music_url: AnyHttpUrl | None = Field(
        default=AnyHttpUrl(
            "http://com.twilio.sounds.music.s3.amazonaws.com/MARKOVICHAMP-Borghestral.mp3"
        ),
        validation_alias="IVR_HOLD_MUSIC_URL",
    )
    fallback_queue: str = Field(default="general", validation_alias="IVR_FALLBACK_QUEUE")
    # Twilio ends a call after 4 hours by default: a call quiet for longer lost its callback.
    call_max_age_seconds: int = Field(default=6 * 3600, ge=300, validation_alias="IVR_CALL_MAX_AGE")
    sweep_interval_seconds: float = Field(
        default=300.0, gt=0, validation_alias="IVR_SWEEP_INTERVAL"
    )

    @field_validator("twilio_auth_token")
    @classmethod
    def _token_is_real(cls, value: str) -> str:
        value = value.strip()
        if len(value) < 16 or value.lower() in _PLACEHOLDER_TOKENS:
            raise ValueError(
                "must be the real Twilio auth token (32 characters), not a placeholder"
            )
        return value

    @field_validator("fallback_queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if not 0 < len(value) <= 64:
            raise ValueError("a Twilio queue name has 1 to 64 characters")
        return value

    @property
    def hold_music_url_str(self) -> str | None:
        return str(self.hold_music_url) if self.hold_music_url else None

    @property
    def base_url(self) -> str:
        """IVR_PUBLIC_URL without its trailing slash: the prefix of every URL Twilio signs."""
        return str(self.public_url).rstrip("/")


_ENV_NAMES = {
    "twilio_auth_token": "TWILIO_AUTH_TOKEN",
    "public_url": "IVR_PUBLIC_URL",
    "database_url": "IVR_DATABASE_URL",
    "fallback_queue": "IVR_FALLBACK_QUEUE",
    "hold_music_url": "IVR_HOLD_MUSIC_URL",
    "call_max_age_seconds": "IVR_CALL_MAX_AGE",
    "sweep_interval_seconds": "IVR_SWEEP_INTERVAL",
}


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or a ConfigError naming each bad variable (no traceback)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "settings"
            name = _ENV_NAMES.get(name, name)
            reason = "is not set" if err["type"] == "missing" else err["msg"]
            lines.append(f"{name} {reason}")
        raise ConfigError("refusing to start: " + "; ".join(lines)) from None
