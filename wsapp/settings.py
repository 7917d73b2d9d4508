"""Settings: one validated model, layered from defaults, the App, the environment and the CLI."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["ConfigError", "Settings", "resolve_settings"]

ENV_PREFIX = "WSAPP_"

Seconds = Annotated[float, Field(gt=0)]
WindowBits = Annotated[int, Field(ge=9, le=15)]


class ConfigError(Exception):
    """A setting has a bad value; the message names the setting and where it came from."""


class Settings(BaseSettings):
    """Every tunable of wsapp, with its default and the reason for it.

    One instance lives on the [App][wsapp.App]; each connection gets its own copy as
    `conn.settings`, so a callback may change a value for one connection without touching
    the others. Every assignment is validated, and takes effect from the next use: a new
    `max_message_size` applies to the next frame read, a new `ping_interval` to the next ping.

    Each field can also be set by an environment variable `WSAPP_<NAME>` and by a command
    line flag `--<name-with-dashes>`; see the settings reference in the docs.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        validate_assignment=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    ping_interval: Seconds | None = 30.0
    """Seconds between keepalive pings; `None` turns keepalive off. The seed's 30 s keeps
    idle connections alive through NATs and proxies that drop silent flows after 60 s."""

    pong_timeout: Seconds = 30.0
    """Seconds to wait for the pong answering a ping before closing with 1011. The seed
    reset a 60 s read deadline on every pong; 30 s after a ping sent every 30 s detects a
    dead peer within the same 60 s."""

    max_message_size: int = Field(default=1024 * 1024, gt=0)
    """Largest message, in bytes, after reassembly and decompression; larger ones close with
    1009. The seed's 4 KiB refuses ordinary JSON documents; 1 MiB (the `websockets` default)
    still bounds what one message can cost."""

    write_timeout: Seconds = 15.0
    """Seconds a `send` may wait for a slow peer to drain before it fails and the connection
    is dropped. The seed's value: long enough for a congested mobile link, short enough that a
    peer which stopped reading does not pin memory for long."""

    read_buffer_size: int = Field(default=100, ge=1)
    """Messages received but not yet handled that a connection may hold (and, beyond the
    first, no more than `max_message_size` bytes of them); when full, wsapp stops reading
    from the socket (backpressure) until the handler catches up. The seed's value."""

    handshake_timeout: Seconds = 10.0
    """Seconds a client has to complete the opening handshake (and TLS) before being dropped.
    A real handshake is one round trip; the seed's 30 s let slow-header attackers hold a
    socket three times longer for nothing (10 s is also the `websockets` default)."""

    close_timeout: Seconds = 10.0
    """Seconds to wait for the peer's half of a closing handshake before dropping the TCP
    connection; also how long callbacks still running after a close get to finish, and the
    grace period of a graceful shutdown. Same as `websockets`."""

    max_header_size: int = Field(default=16 * 1024, ge=1024)
    """Largest handshake request head, in bytes; larger ones get 431. 16 KiB holds any
    realistic set of cookies and tokens while bounding what an unauthenticated peer costs."""

    compression: bool = False
    """Negotiate permessage-deflate (RFC 7692) when the client offers it. Off by default, as in
    the seed: compression costs CPU on every message and up to ~300 KiB of zlib state per
    connection, which only pays off for large, repetitive messages."""

    compression_server_max_window_bits: WindowBits = 15
    """LZ77 window (log2 bytes) wsapp compresses with; smaller saves memory per connection."""

    compression_client_max_window_bits: WindowBits = 15
    """Window the client must compress with; below 15, clients that cannot limit it get no
    compression."""

    compression_server_no_context_takeover: bool = False
    """Reset wsapp's compressor after each message: less memory, worse ratio."""

    compression_client_no_context_takeover: bool = False
    """Ask the client to reset its compressor after each message."""

    allowed_origins: list[str] = Field(default_factory=list)
    """Origins (`scheme://host[:port]`) allowed besides the request's own host; `"*"` allows
    any origin (see `App.allow_any_origin`). Cross-origin browser requests are refused with
    403 by default so that a page on another site cannot ride a user's cookies."""

    subprotocols: list[str] = Field(default_factory=list)
    """Subprotocols the server speaks, in order of preference; the first the client offers
    is chosen."""

    max_connections: int | None = Field(default=None, ge=1)
    """Open connections one server process accepts before answering 503; `None` for no limit
    other than the operating system's file descriptors (as in the seed)."""

    max_invalid_messages: int | None = Field(default=10, ge=1)
    """Invalid messages in a row (not JSON, or not what the handler's type accepts) after
    which the connection closes with 1008; each one before gets the error reply. New: the
    seed had no typed messages. `None` never closes for this."""

    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or networks (`10.0.0.0/8`) of reverse proxies whose `X-Forwarded-For` or
    `Forwarded` header names the real client; `"unix"` trusts peers on a unix socket. Empty
    by default: trusting such headers from
    anyone would let any client forge its address."""

    debug: bool = False
    """Put tracebacks in 500 responses of a failing `on_connect`. Never in production: it
    shows your code to whoever connects."""

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            if item != "unix":
                ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and "://" not in origin:
                raise ValueError(f"{origin!r} is not an origin like 'https://example.com'")
        return [origin if origin == "*" else origin.rstrip("/").lower() for origin in value]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Constructing Settings(...) in code uses only its arguments; the environment is read
        # once, by resolve_settings, so that each error can name the layer it came from.
        return (init_settings,)


def parse_none(name: str, value: Any) -> Any:
    """Map the words ``none`` and ``off`` to None for settings that accept None (from text)."""
    optional = type(None) in getattr(Settings.model_fields[name].annotation, "__args__", ())
    if optional and isinstance(value, str) and value.strip().lower() in ("none", "off"):
        return None
    return value


def _describe(error: ValidationError, name_of: Mapping[str, str], source: str) -> str:
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        problems.append(f"{name_of.get(field, field)}: {item['msg']}")
    return f"invalid setting from {source}: " + "; ".join(problems)


def resolve_settings(
    base: Settings,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Layer the environment and CLI flags over ``base``: defaults < App < env < flags.

    Raises [ConfigError][wsapp.ConfigError] naming the setting and its source.
    """
    values = base.model_dump(exclude_unset=True)
    env_source = EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, case_sensitive=False)
    env_source.env_vars = {
        key.lower(): value
        for key, value in (os.environ if environ is None else environ).items()
        if key.upper().startswith(ENV_PREFIX)
    }
    env_names = {name: ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = [key.upper() for key in env_source.env_vars if key.upper() not in env_names.values()]
    if unknown:
        raise ConfigError(
            f"unknown environment variable {unknown[0]}; settings are "
            + ", ".join(sorted(env_names.values()))
        )
    try:
        env_values = {key: parse_none(key, value) for key, value in env_source().items()}
    except Exception as exc:  # pydantic-settings wraps JSON errors in its own SettingsError
        raise ConfigError(
            f'invalid setting from the environment: {exc} (list values are JSON: \'["a", "b"]\')'
        ) from None
    layers = [("the environment", env_values, env_names)]
    if flags:
        flag_names = {name: "--" + name.replace("_", "-") for name in Settings.model_fields}
        layers.append(("the command line", dict(flags), flag_names))
    for source, layer, names in layers:
        try:
            Settings.model_validate(layer)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, names, source)) from None
        values.update(layer)
    return Settings.model_validate(values)
