"""Where ``tq`` connects: flag > environment > profile > default, profiles from the XDG config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tq.cli.config import DEFAULT_URL, ConfigError, Target, config_path, resolve

pytestmark = pytest.mark.unit

PROFILES = """
[profiles.default]
url = "http://default:1"
token = "t-default"

[profiles.prod]
url = "https://prod"
token = "t-prod"

[profiles.urlonly]
url = "http://urlonly"
"""


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment whose XDG config holds :data:`PROFILES`."""
    (tmp_path / "tq").mkdir()
    (tmp_path / "tq" / "config.toml").write_text(PROFILES)
    return {"XDG_CONFIG_HOME": str(tmp_path)}


def test_the_file_is_under_xdg_config_home_else_dot_config(tmp_path: Path) -> None:
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "tq" / "config.toml"
    assert config_path({"XDG_CONFIG_HOME": ""}) == Path.home() / ".config" / "tq" / "config.toml"


def test_without_file_env_or_flags_it_is_the_local_stack_without_a_token(tmp_path: Path) -> None:
    assert resolve(None, None, None, {"XDG_CONFIG_HOME": str(tmp_path)}) == Target(DEFAULT_URL, None)


def test_the_default_profile_applies_when_none_is_named(home: dict[str, str]) -> None:
    assert resolve(None, None, None, home) == Target("http://default:1", "t-default")


def test_a_named_profile_by_flag_or_env(home: dict[str, str]) -> None:
    assert resolve(None, None, "prod", home) == Target("https://prod", "t-prod")
    assert resolve(None, None, None, {**home, "TQ_PROFILE": "prod"}) == Target("https://prod", "t-prod")
    # the flag names the profile even when the environment names another
    assert resolve(None, None, "urlonly", {**home, "TQ_PROFILE": "prod"}) == Target("http://urlonly", None)


def test_env_beats_the_profile_and_flags_beat_env(home: dict[str, str]) -> None:
    env = {**home, "TQ_PROFILE": "prod", "TQ_URL": "http://env", "TQ_TOKEN": "t-env"}
    assert resolve(None, None, None, env) == Target("http://env", "t-env")
    assert resolve("http://flag", "t-flag", None, env) == Target("http://flag", "t-flag")
    assert resolve(None, "t-flag", None, env) == Target("http://env", "t-flag")


def test_a_profiles_token_goes_only_to_its_own_gateway(home: dict[str, str]) -> None:
    # Given the default profile (a token for http://default:1): another URL gets no token from it
    assert resolve("http://elsewhere", None, None, home) == Target("http://elsewhere", None)
    assert resolve(None, None, None, {**home, "TQ_URL": "http://elsewhere"}) == Target("http://elsewhere", None)
    assert resolve(None, None, "prod", {**home, "TQ_URL": "http://default:1"}) == Target("http://default:1", None)
    # its own URL, typed (with or without a trailing slash), still gets it
    assert resolve("http://default:1/", None, None, home) == Target("http://default:1/", "t-default")
    # and an explicit token always applies
    assert resolve("http://elsewhere", "t-flag", None, home) == Target("http://elsewhere", "t-flag")
    assert resolve("http://elsewhere", None, None, {**home, "TQ_TOKEN": "t-env"}) == Target("http://elsewhere", "t-env")


def test_a_profile_without_url_keeps_its_token_for_the_default_gateway(tmp_path: Path) -> None:
    (tmp_path / "tq").mkdir()
    (tmp_path / "tq" / "config.toml").write_text('[profiles.default]\ntoken = "t-local"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert resolve(None, None, None, env) == Target(DEFAULT_URL, "t-local")
    assert resolve("http://elsewhere", None, None, env) == Target("http://elsewhere", None)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[profiles.default\n", "not valid TOML"),
        ("profiles = 3\n", "must be a table"),
        ("[profiles.default]\nurl = 3\n", "table of strings"),
    ],
)
def test_a_bad_file_is_a_config_error(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "tq").mkdir()
    (tmp_path / "tq" / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=says):
        resolve(None, None, None, {"XDG_CONFIG_HOME": str(tmp_path)})


def test_a_named_profile_that_is_missing_is_a_config_error_listing_the_profiles(home: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"no profile 'staging' .* \(profiles: default, prod, urlonly\)"):
        resolve(None, None, "staging", home)
    with pytest.raises(ConfigError, match="profiles: none"):
        resolve(None, None, "staging", {"XDG_CONFIG_HOME": "/nonexistent"})
