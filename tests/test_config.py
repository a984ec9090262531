"""owl.config: durations (OWL_KEEP_ALIVE, Ollama's keep_alive) and one-line settings errors."""

from __future__ import annotations

import math

import pytest

from owl.config import FOREVER_AFTER_S, Settings, duration_seconds, load_settings
from owl.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (300, 300.0),
        (0, 0.0),
        (2.5, 2.5),
        ("300", 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        (" 1m30s ", 90.0),
        ("-1", -1.0),
        (-5, -5.0),  # negative is forever already, kept as given
        (FOREVER_AFTER_S, FOREVER_AFTER_S),  # a century is still a duration
    ],
)
def test_durations_read_as_ollama_reads_them(value: float | str, seconds: float) -> None:
    assert duration_seconds(value) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "forever",
        "Forever",
        "inf",
        "infinite",
        "Infinity",
        math.inf,
        -math.inf,
        "-inf",
        1e308,
        "1e308",
        "9999999999h",
        "1" + "0" * 400 + "h",
        10**400,  # too large for a float
        FOREVER_AFTER_S * 1.01,
    ],
)
def test_what_no_timer_can_hold_is_forever(value: float | str) -> None:
    assert duration_seconds(value) == -1.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "NaN"),
        ("nan", "NaN"),
        ("NaN", "NaN"),
        ("5 minutes", "not a duration"),
        ("", "not a duration"),
        ("5m-", "not a duration"),
    ],
)
def test_nan_and_nonsense_are_value_errors(value: float | str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        duration_seconds(value)


def test_the_keep_alive_setting_goes_through_the_same_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OWL_KEEP_ALIVE", "forever")
    assert Settings().keep_alive == -1.0
    assert Settings(keep_alive=1e308).keep_alive == -1.0  # a number, not only a string
    with pytest.raises(ValueError, match="NaN"):
        Settings(keep_alive=math.nan)


def test_load_settings_names_the_flag_that_gave_a_bad_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(port=99999, ctx=None)
    assert str(caught.value) == "invalid --port 99999: input should be less than or equal to 65535"
    with pytest.raises(ConfigError, match=r"^invalid --max-body 0: .*largest request body"):
        load_settings(max_body=0)


def test_load_settings_names_the_variable_and_its_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OWL_MAX_BODY", "abc")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("invalid OWL_MAX_BODY='abc': input should be a valid integer")
    assert message.endswith("fix OWL_MAX_BODY, or unset it for the default (8388608)")
    assert "\n" not in message
    monkeypatch.delenv("OWL_MAX_BODY")
    monkeypatch.setenv("OWL_KEEP_ALIVE", "nan")
    with pytest.raises(ConfigError, match=r"^invalid OWL_KEEP_ALIVE='nan': 'nan' is NaN"):
        load_settings()


def test_allowed_sources_take_patterns_beside_private(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OWL_ALLOWED_SOURCES", "hf:MyOrg/*, https://models.example/*,package:*,file:*,private"
    )
    settings = load_settings()
    assert settings.allows_private_sources
    assert settings.source_patterns == [
        "hf:MyOrg/*",
        "https://models.example/*",
        "package:*",
        "file:*",
    ]


@pytest.mark.parametrize("value", ["public", "MyOrg/*", "ftp://mirror/*"])
def test_an_allowed_source_of_no_known_kind_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("OWL_ALLOWED_SOURCES", f"package:*,{value}")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith("invalid OWL_ALLOWED_SOURCES=")
    assert f"unknown source {value!r}" in message and "hf:MyOrg/*" in message
