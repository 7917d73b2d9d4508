"""Settings: one validated model, layered from defaults, the App, the environment and the CLI."""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, NoReturn

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from wsapp.protocol.masking import NO_SPEEDUPS

__all__ = ["ConfigError", "Settings", "resolve_settings"]

ENV_PREFIX = "WSAPP_"

Seconds = Annotated[float, Field(gt=0)]
WindowBits = Annotated[int, Field(ge=9, le=15)]


class SettingList(list[str]):
    """The value of a list setting: a list that cannot be changed in place, because the
    settings of every connection share it with the server's (see `connection_settings`).
    Assign a new list instead: ``conn.settings.subprotocols = [*conn.settings.subprotocols,
    "chat"]``."""

    def _refuse(self, *args: object) -> NoReturn:
        raise TypeError(
            "a list setting cannot be changed in place (every connection's settings share "
            "it with the server's); assign a new list instead, like "
            "conn.settings.subprotocols = [*conn.settings.subprotocols, 'chat']"
        )

    append = extend = insert = remove = _refuse
    pop = clear = sort = reverse = _refuse  # type: ignore[assignment]
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self) -> tuple[type[SettingList], tuple[list[str]]]:
        # Copies and pickles are made whole, not appended to item by item.
        return SettingList, (list(self),)


# NoDecode: pydantic-settings would demand JSON for a list from the environment; the
# validator `_split_lists` parses text the same way whether it came from a flag or a variable.
TextList = Annotated[list[str], NoDecode, AfterValidator(SettingList)]


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting and where it came from.

    A `ValueError` (as pydantic's `ValidationError` is), so `except ValueError` keeps
    catching bad settings.
    """


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean X?"`` for the candidate closest to a misspelled ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def unknown_setting(name: str) -> str:
    """What to say about a setting name that does not exist."""
    hint = did_you_mean(name, Settings.model_fields) or "; see wsapp.Settings for the settings"
    return f"unknown setting {name!r}{hint}"


def split_list(value: Any) -> Any:
    """A list setting written as text: comma-separated (``a,b``) or a JSON array.

    Items are stripped and empty ones dropped, so ``""`` is the empty list. Anything that
    is not text (a list from code) is returned as it is, for the field's own validation.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{text!r} starts like a JSON list but is not one ({exc.msg}); "
                "write the items comma-separated instead, like a,b"
            ) from None
    return [item.strip() for item in text.split(",") if item.strip()]


PositiveRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A rate or a burst: a finite number above 0."""


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

    allowed_origins: TextList = Field(default_factory=SettingList)
    """Origins (`scheme://host[:port]`) allowed besides the request's own host; `"*"` allows
    any origin (see `App.allow_any_origin`). Cross-origin browser requests are refused with
    403 by default so that a page on another site cannot ride a user's cookies. `"null"`
    allows the `Origin: null` that sandboxed iframes and local files send: all of them, so
    only when no cookie authorizes anything."""

    subprotocols: TextList = Field(default_factory=SettingList)
    """Subprotocols the server speaks, in order of preference; the first the client offers
    is chosen."""

    max_connections: int | None = Field(default=None, ge=1)
    """Connections (open or handshaking) one server process accepts before answering 503;
    per process, so with `--workers N` the whole server takes N times as many. `None` for no
    limit other than the operating system's file descriptors (as in the seed)."""

    outbound_budget: int = Field(default=1024 * 1024, ge=1024)
    """Bytes waiting to be sent to one connection beyond which a broadcast treats it as a
    slow consumer, and the endpoint's `on_slow` policy closes it with 1008 (or skips the
    message for it). 1 MiB (Centrifugo's default) holds seconds of a busy room for a client
    that keeps up, and bounds what one that stalls can cost. A `send` to one connection
    waits instead (backpressure)."""

    broker: str | None = None
    """Where rooms meet across processes: `redis://host:port/db` (`pip install
    'wsapp[redis]'`) for several processes or hosts. `None`: one process; with `--workers
    N`, the supervisor relays between its own workers."""

    max_invalid_messages: int | None = Field(default=10, ge=1)
    """Invalid messages in a row (not JSON, or not what the handler's type accepts) after
    which the connection closes with 1008; each one before gets the error reply. New: the
    seed had no typed messages. `None` never closes for this."""

    trusted_proxies: TextList = Field(default_factory=SettingList)
    """Addresses or networks (`10.0.0.0/8`) of reverse proxies whose `X-Forwarded-For` or
    `Forwarded` header names the real client; `"unix"` trusts peers on a unix socket. Empty
    by default: trusting such headers from
    anyone would let any client forge its address."""

    health_path: str | None = None
    """A path answered over plain HTTP (GET or HEAD), not as a WebSocket endpoint: 200 `ok`
    while the server serves, 503 once it is shutting down, for load balancers' health checks
    and Kubernetes' readiness probes. `None` (the default): no such path, and every plain
    HTTP request gets 426 on an endpoint's path and 404 on a path nothing serves. A WebSocket
    handshake on the same path still goes to its endpoint."""

    metrics_path: str | None = None
    """A path answered over plain HTTP (GET or HEAD) with the Prometheus metrics of the
    server, summed over the workers with `--workers` (needs `pip install 'wsapp[metrics]'`;
    see the metrics guide). `None` (the default): no such path, and `on_message` is not
    timed. A WebSocket handshake on the same path still goes to its endpoint."""

    drain_delay: float = Field(default=0.0, ge=0)
    """Seconds a graceful shutdown keeps serving, the health path answering 503, before it
    closes the listeners and the connections: time for a load balancer that probes the
    path to stop sending new clients here. Set it a little longer than the probe's period
    times the failures it needs; 0 (the default) closes at once. A second signal cuts it
    short."""

    loop_lag_warning: Seconds | None = 1.0
    """Log a warning when the event loop was blocked this many seconds or more (a callback
    running blocking code inside `async def`), naming the lag: blocks that outlast
    `pong_timeout` close connections with 1011. 1 s is far above a healthy loop's lag
    (milliseconds) and well below the keepalive timeouts; `None` turns the warning off."""

    rate_limit_messages: PositiveRate | None = None
    """Messages per second one connection may send, on average; a message over it is
    handled by the endpoint's `on_rate_limit` policy (close with 1008, or drop it with an
    error reply). Off by default: a fair rate depends on the app (a chat sends a message
    now and then, a game sixty a second), and a wrong default would cut off good clients."""

    rate_limit_message_burst: PositiveRate | None = None
    """Messages a connection may send at once above `rate_limit_messages`, after a quiet
    spell; by default one second's worth."""

    rate_limit_bytes: PositiveRate | None = None
    """Payload bytes per second one connection may send, on average (UTF-8 bytes for text),
    policed like `rate_limit_messages`. A message larger than the burst passes once the
    allowance is full, and the connection then waits it out. Off by default."""

    rate_limit_byte_burst: PositiveRate | None = None
    """Payload bytes a connection may send at once above `rate_limit_bytes`; by default one
    second's worth."""

    rate_limit_handshakes: PositiveRate | None = None
    """Handshakes per second one client address may make, on average; over it, 429 with
    `Retry-After`. The address is the one `trusted_proxies` resolves (the real client behind
    a trusted proxy, not the proxy). Off by default: many clients can share one address (a
    company's NAT), so the right figure depends on who your clients are."""

    rate_limit_handshake_burst: PositiveRate | None = None
    """Handshakes a client address may make at once above `rate_limit_handshakes` (a page
    opening several sockets, a reconnect storm after a restart); by default one second's
    worth."""

    debug: bool = False
    """Put tracebacks in 500 responses of a failing `on_connect`. Never in production: it
    shows your code to whoever connects."""

    def __init__(self, **values: Any) -> None:
        # pydantic-settings' own keyword arguments start with "_"; settings never do.
        for name in values:
            if not name.startswith("_") and name not in type(self).model_fields:
                raise ConfigError(unknown_setting(name))
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None

    # pydantic calls a model's own __init__ from model_validate too, where a ConfigError
    # (a ValueError) would come back wrapped in a ValidationError; this marker, which
    # BaseModel.__init__ carries as well, makes model_validate validate directly instead, so
    # it keeps raising ValidationError (resolve_settings needs its details) and only
    # Settings(...) raises ConfigError.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        # Assignments happen in callbacks (conn.settings.x = ...), never per message, so one
        # more frame here costs nothing that matters.
        if not name.startswith("_") and name not in type(self).model_fields:
            raise ConfigError(unknown_setting(name))
        # The set of assigned fields may be shared (`connection_settings`): this one's own.
        object.__setattr__(self, "__pydantic_fields_set__", set(self.model_fields_set))
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None

    @field_validator("allowed_origins", "subprotocols", "trusted_proxies", mode="before")
    @classmethod
    def _split_lists(cls, value: Any) -> Any:
        return split_list(value)

    presence_ttl: Seconds = 15.0
    """Seconds the broker keeps a process's presence (the members it reported) once that
    process stops renewing it, which it does every third of this: how long the members of
    a process that crashed stay listed. Short enough to be right soon, long enough not to
    flicker under a slow broker."""

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.partition("://")[0].lower()
        if scheme not in ("redis", "rediss", "unix", "hub+unix") or "://" not in value:
            raise ValueError(
                f"{value!r} is not a broker URL: use redis://host:port/db (or rediss://, "
                "unix:///path/redis.sock), or leave it unset for one process"
            )
        return value

    @field_validator("health_path", "metrics_path")
    @classmethod
    def _check_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith("/"):
            example = "/healthz" if info.field_name == "health_path" else "/metrics"
            raise ValueError(f"{value!r} is not a path: it must start with '/', like {example!r}")
        return value

    @field_validator("metrics_path")
    @classmethod
    def _check_metrics_library(cls, value: str | None) -> str | None:
        if value is not None and importlib.util.find_spec("prometheus_client") is None:
            raise ValueError(
                "serving metrics needs prometheus_client, which is not installed: "
                "pip install 'wsapp[metrics]'"
            )
        return value

    @model_validator(mode="after")
    def _check_paths_differ(self) -> Settings:
        if self.metrics_path is not None and self.metrics_path == self.health_path:
            raise ValueError(
                f"health_path and metrics_path are both {self.metrics_path!r}: "
                "give each its own path"
            )
        return self

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
        checked = []
        for origin in value:
            if origin.lower() in ("*", "null"):
                checked.append(origin.lower())
            elif "://" in origin:
                checked.append(origin.rstrip("/").lower())
            else:
                raise ValueError(
                    f"{origin!r} is not an origin like 'https://example.com' (nor '*' or 'null')"
                )
        return SettingList(checked)

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


def describe(
    error: ValidationError, name_of: Mapping[str, str] | None = None, source: str | None = None
) -> str:
    """One line naming each bad setting (as ``name_of`` spells it) and, if known, its source."""
    problems = []
    for item in error.errors(include_url=False):
        field = str(item["loc"][0]) if item["loc"] else ""
        # A validator's ValueError arrives as "Value error, <its message>".
        message = " ".join(item["msg"].removeprefix("Value error, ").split())
        problems.append(f"{(name_of or {}).get(field, field)}: {message}")
    head = f"invalid setting from {source}: " if source else "invalid setting "
    return head + "; ".join(problems)


def connection_settings(settings: Settings) -> Settings:
    """Settings one connection may change (`conn.settings`) without changing the server's.

    A copy would cost every open connection more than a KiB (the model's dict), so the
    connection's settings share the server's values until one of them is assigned:
    pydantic's validated assignment gives the model a new dict, the one place its values
    live, rather than changing the shared one; the set of the fields assigned is copied
    before an assignment adds to it; and the list values, which could be changed in place, cannot be
    ([SettingList][wsapp.settings.SettingList]).
    """
    shared = Settings.__new__(Settings)
    object.__setattr__(shared, "__dict__", settings.__dict__)
    object.__setattr__(shared, "__pydantic_fields_set__", settings.model_fields_set)
    object.__setattr__(shared, "__pydantic_extra__", None)
    object.__setattr__(shared, "__pydantic_private__", None)
    return shared


def resolve_settings(
    base: Settings,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Layer the environment and CLI flags over ``base``: defaults < App < env < flags.

    Text from either is parsed the same way: lists are comma-separated (or JSON), and
    `none`/`off` mean None for a setting that accepts it. Raises
    [ConfigError][wsapp.ConfigError] naming the setting and its source.
    """
    values = base.model_dump(exclude_unset=True)
    env_source = EnvSettingsSource(Settings, env_prefix=ENV_PREFIX, case_sensitive=False)
    env_source.env_vars = {
        key.lower(): value
        for key, value in (os.environ if environ is None else environ).items()
        if key.upper().startswith(ENV_PREFIX) and key.upper() != NO_SPEEDUPS
    }
    env_names = {name: ENV_PREFIX + name.upper() for name in Settings.model_fields}
    unknown = sorted(
        key.upper() for key in env_source.env_vars if key.upper() not in env_names.values()
    )
    if unknown:
        # Matched without the prefix, which every name shares and would make any two alike.
        close = difflib.get_close_matches(
            unknown[0].removeprefix(ENV_PREFIX).lower(), Settings.model_fields, n=1
        )
        hint = (
            f"; did you mean {env_names[close[0]]}?"
            if close
            else "; the settings are " + ", ".join(sorted(env_names.values()))
        )
        raise ConfigError(f"unknown environment variable {unknown[0]}{hint}")
    try:
        env_values = {key: parse_none(key, value) for key, value in env_source().items()}
    except Exception as exc:  # pydantic-settings wraps decoding errors in its own SettingsError
        raise ConfigError(f"invalid setting from the environment: {exc}") from None
    layers = [("the environment", env_values, env_names)]
    if flags:
        flag_names = {name: "--" + name.replace("_", "-") for name in Settings.model_fields}
        flag_values = {key: parse_none(key, value) for key, value in flags.items()}
        layers.append(("the command line", flag_values, flag_names))
    for source, layer, names in layers:
        try:
            checked = Settings.model_validate(layer)
        except ValidationError as exc:
            raise ConfigError(describe(exc, names, source)) from None
        values.update({name: getattr(checked, name) for name in layer})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:  # each layer was valid, so this is a bug, but say it clearly
        raise ConfigError(describe(exc)) from None
