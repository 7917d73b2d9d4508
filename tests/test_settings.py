"""Settings, sans I/O: the layers (defaults < App < env < flags), their errors, list syntax."""

from __future__ import annotations

import copy
import pickle
import typing
from collections.abc import Callable
from typing import Any

import pydantic
import pytest

import wsapp
from wsapp.request import is_origin_allowed
from wsapp.settings import ConfigError, Settings, connection_settings, resolve_settings, split_list

LIST_SETTINGS = [
    name
    for name, field in Settings.model_fields.items()
    if typing.get_origin(field.annotation) is list
]


def resolve(
    app: wsapp.App, environ: dict[str, str] | None = None, /, **flags: Any
) -> wsapp.Settings:
    return resolve_settings(app.settings, environ=environ or {}, flags=flags)


def test_each_layer_wins_over_the_one_below() -> None:
    app = wsapp.App(settings=wsapp.Settings(ping_interval=5), max_message_size=111)
    env = {"WSAPP_MAX_MESSAGE_SIZE": "222", "WSAPP_WRITE_TIMEOUT": "8", "WSAPP_DEBUG": "true"}
    settings = resolve(app, env, write_timeout="9", debug=False)
    assert settings.pong_timeout == 30.0  # default
    assert settings.ping_interval == 5.0  # App(settings=...)
    assert settings.max_message_size == 222  # environment over App
    assert settings.write_timeout == 9.0  # flag over environment
    assert settings.debug is False  # flag over environment
    assert app.settings.max_message_size == 111  # the App's own settings are left alone


def test_the_environment_is_read_only_by_resolve_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WSAPP_MAX_MESSAGE_SIZE", "222")
    assert wsapp.Settings().max_message_size == 1024 * 1024
    assert resolve_settings(wsapp.Settings()).max_message_size == 222


def test_a_bad_app_value_is_one_line_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as caught:
        wsapp.App(max_message_size="big")
    assert str(caught.value) == (
        "invalid setting max_message_size: "
        "Input should be a valid integer, unable to parse string as an integer"
    )
    with pytest.raises(ConfigError, match=r"^invalid setting ping_interval: Input should be"):
        wsapp.Settings(ping_interval=-1)
    assert isinstance(caught.value, ValueError)  # code catching ValueError still works


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(wsapp.App(), {"WSAPP_PING_INTERVAL": "-1"})
    assert str(caught.value) == (
        "invalid setting from the environment: WSAPP_PING_INTERVAL: Input should be greater than 0"
    )


def test_a_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(wsapp.App(), {"WSAPP_PING_INTERVAL": "3"}, max_connections="0")
    assert str(caught.value) == (
        "invalid setting from the command line: --max-connections: "
        "Input should be greater than or equal to 1"
    )


def test_a_validator_message_loses_pydantics_prefix() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(wsapp.App(), trusted_proxies="10.0.0.0/8,nope")
    assert str(caught.value) == (
        "invalid setting from the command line: --trusted-proxies: "
        "'nope' does not appear to be an IPv4 or IPv6 network"
    )


def test_an_unknown_environment_variable_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(wsapp.App(), {"WSAPP_MAX_MESAGE_SIZE": "1"})
    assert str(caught.value) == (
        "unknown environment variable WSAPP_MAX_MESAGE_SIZE; did you mean WSAPP_MAX_MESSAGE_SIZE?"
    )
    with pytest.raises(ConfigError) as caught:
        resolve(wsapp.App(), {"WSAPP_ZZZ": "1"})
    message = str(caught.value)
    assert message.startswith("unknown environment variable WSAPP_ZZZ; the settings are ")
    assert "WSAPP_MAX_MESSAGE_SIZE" in message and "did you mean" not in message


def test_the_switch_of_the_c_speedup_is_not_taken_for_a_mistyped_setting() -> None:
    assert resolve(wsapp.App(), {"WSAPP_NO_SPEEDUPS": "1"}) == wsapp.Settings()


def test_an_unknown_app_setting_suggests_the_nearest() -> None:
    with pytest.raises(TypeError) as caught:
        wsapp.App(max_mesage_size=1)
    assert str(caught.value) == (
        "App() got an unknown setting 'max_mesage_size'; did you mean max_message_size?"
    )
    with pytest.raises(ConfigError) as unknown:
        wsapp.Settings(max_mesage_size=1)
    assert str(unknown.value) == (
        "unknown setting 'max_mesage_size'; did you mean max_message_size?"
    )
    with pytest.raises(TypeError) as far:
        wsapp.App(zzz=1)
    assert (
        str(far.value) == "App() got an unknown setting 'zzz'; see wsapp.Settings for the settings"
    )


def test_assignments_are_validated_and_raise_config_error() -> None:
    settings = wsapp.Settings()
    with pytest.raises(ConfigError) as caught:
        settings.max_message_size = -1
    assert str(caught.value) == "invalid setting max_message_size: Input should be greater than 0"
    with pytest.raises(ConfigError, match="did you mean max_message_size"):
        settings.max_mesage_size = 1
    settings.subprotocols = "v2, v1"  # type: ignore[assignment]
    assert settings.subprotocols == ["v2", "v1"]
    assert settings.max_message_size == 1024 * 1024


def test_model_validate_keeps_raising_pydantics_own_error() -> None:
    # resolve_settings relies on it to name each layer; Settings(...) is the friendly form.
    with pytest.raises(pydantic.ValidationError):
        Settings.model_validate({"max_message_size": "big"})


@pytest.mark.parametrize("name", LIST_SETTINGS)
def test_every_list_setting_takes_commas_from_env_and_flags_and_json_from_env(name: str) -> None:
    value = {"allowed_origins": "https://a.example", "trusted_proxies": "10.0.0.0/8"}.get(name, "a")
    second = value.replace("a", "b") if name != "trusted_proxies" else "unix"
    env_var = "WSAPP_" + name.upper()
    expected = [value, second]
    assert getattr(resolve(wsapp.App(), {env_var: f"{value}, {second}"}), name) == expected
    assert getattr(resolve(wsapp.App(), **{name: f"{value},{second}"}), name) == expected
    json_list = f'["{value}", "{second}"]'
    assert getattr(resolve(wsapp.App(), {env_var: json_list}), name) == expected
    assert getattr(resolve(wsapp.App(), {env_var: ""}), name) == []


def test_the_env_examples_of_the_docs() -> None:
    env = {
        "WSAPP_SUBPROTOCOLS": "a,b",
        "WSAPP_ALLOWED_ORIGINS": "https://a.example,https://b.example",
    }
    settings = resolve(wsapp.App(), env)
    assert settings.subprotocols == ["a", "b"]
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]


def test_split_list() -> None:
    assert split_list(" a , b,,c ") == ["a", "b", "c"]
    assert split_list('["a", "b"]') == ["a", "b"]
    assert split_list(["x"]) == ["x"]  # from code: left to the field's validation
    with pytest.raises(ValueError, match="starts like a JSON list but is not one"):
        split_list('["a", ')


@pytest.mark.parametrize("word", ["none", "off", "None", " OFF "])
def test_none_and_off_from_text_for_settings_that_accept_none(word: str) -> None:
    settings = resolve(wsapp.App(), {"WSAPP_PING_INTERVAL": word}, max_connections=word)
    assert settings.ping_interval is None
    assert settings.max_connections is None
    with pytest.raises(ConfigError, match="--max-message-size: Input should be a valid integer"):
        resolve(wsapp.App(), max_message_size=word)


def test_allowed_origins_are_normalized_and_checked() -> None:
    settings = wsapp.Settings(allowed_origins=["https://A.example/", "null", "NULL", "*"])
    assert settings.allowed_origins == ["https://a.example", "null", "null", "*"]
    with pytest.raises(ConfigError) as caught:
        wsapp.Settings(allowed_origins=["a.example"])
    assert str(caught.value) == (
        "invalid setting allowed_origins: 'a.example' is not an origin like "
        "'https://example.com' (nor '*' or 'null')"
    )


def request(origin: str | None, host: str = "app.example") -> wsapp.Request:
    headers = [("host", host)] + ([("origin", origin)] if origin is not None else [])
    return wsapp.Request("GET", "/", "/", "", wsapp.Headers(headers), None)


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        ("null", [], False),
        ("null", ["null"], True),
        ("null", ["https://b.example"], False),
        ("null", ["*"], True),
        ("NULL", ["null"], False),  # browsers send it lowercase: anything else is not it
        ("null/", ["null"], False),
        ("https://b.example", ["null"], False),
        ("https://app.example", ["null"], True),  # same origin, as always
        (None, ["null"], True),  # not a browser, as always
        ("https://B.example/", ["https://b.example"], True),
    ],
)
def test_null_origin_is_allowed_only_when_listed(
    origin: str | None, allowed: list[str], expected: bool
) -> None:
    allowed = wsapp.Settings(allowed_origins=allowed).allowed_origins
    assert is_origin_allowed(request(origin), allowed) is expected


def test_a_connections_settings_change_nothing_of_the_servers_nor_of_other_connections() -> None:
    server = wsapp.Settings(allowed_origins=["https://a.example"], max_message_size=10)
    mine, theirs = connection_settings(server), connection_settings(server)
    assert mine == server
    mine.max_message_size = 20
    mine.allowed_origins = [*mine.allowed_origins, "https://b.example"]
    assert (server.max_message_size, theirs.max_message_size, mine.max_message_size) == (10, 10, 20)
    assert server.allowed_origins == theirs.allowed_origins == ["https://a.example"]
    assert mine.allowed_origins == ["https://a.example", "https://b.example"]
    assert mine.model_fields_set == {"allowed_origins", "max_message_size"}
    assert (
        server.model_fields_set
        == theirs.model_fields_set
        == {"allowed_origins", "max_message_size"}
    )
    with pytest.raises(ConfigError, match="max_message_size"):
        theirs.max_message_size = -1  # still validated
    assert server.max_message_size == 10


@pytest.mark.parametrize(
    "change",
    [
        lambda values: values.append("chat"),
        lambda values: values.extend(["chat"]),
        lambda values: values.__setitem__(0, "chat"),
        lambda values: values.__iadd__(["chat"]),
        lambda values: values.clear(),
    ],
    ids=["append", "extend", "setitem", "+=", "clear"],
)
def test_a_list_setting_cannot_be_changed_in_place(change: Callable[[list[str]], object]) -> None:
    server = wsapp.Settings(subprotocols=["json"])
    mine = connection_settings(server)
    with pytest.raises(TypeError, match=r"assign a new list instead"):
        change(mine.subprotocols)
    assert server.subprotocols == ["json"]
    assert wsapp.Settings().trusted_proxies == []  # defaults too
    with pytest.raises(TypeError):
        wsapp.Settings().trusted_proxies.append("10.0.0.1")


def test_settings_with_list_values_copy_and_pickle_whole() -> None:
    settings = wsapp.Settings(subprotocols=["json", "chat"])
    for copied in (
        copy.deepcopy(settings),
        pickle.loads(pickle.dumps(settings)),
        settings.model_copy(deep=True),
    ):
        assert copied.subprotocols == ["json", "chat"]
        assert isinstance(copied.subprotocols, list)
