"""Where the command line finds the gateway and its token: flag > environment > profile > default; a profile's
token only for that profile's URL (as gh ties a token to its host).

Profiles live in ``$XDG_CONFIG_HOME/tq/config.toml`` (``~/.config/tq/config.toml``)::

    [profiles.default]          # used when neither --profile nor TQ_PROFILE names one
    url = "http://127.0.0.1:8080"
    token = "dev-alice"

    [profiles.prod]
    url = "https://tq.example.com"
    token = "..."
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: The gateway ``make run`` starts.
DEFAULT_URL = "http://127.0.0.1:8080"
#: The profile a config file's ``[profiles.default]`` table holds, read when no profile is named.
DEFAULT_PROFILE = "default"


class ConfigError(Exception):
    """Raised when the config file cannot be read or names no such profile (a usage error: exit 2)."""


@dataclass(frozen=True)
class Target:
    """The gateway a command talks to, and the token it sends (``None``: no ``Authorization`` header)."""

    url: str
    token: str | None


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/tq/config.toml``, ``~/.config/tq/config.toml`` when it is unset or empty."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "tq" / "config.toml"


def resolve(
    url: str | None, token: str | None, profile: str | None, environ: Mapping[str, str] | None = None
) -> Target:
    """The target from the flags (``url``, ``token``, ``profile``), then ``TQ_URL``/``TQ_TOKEN``/``TQ_PROFILE``,
    then the profile's values, then :data:`DEFAULT_URL` and no token.

    A profile's token goes only to that profile's gateway (its ``url``, :data:`DEFAULT_URL` if it has none): when
    ``--url``/``TQ_URL`` names another, no token is sent unless ``--token``/``TQ_TOKEN`` gives one."""
    environ = os.environ if environ is None else environ
    named = profile or environ.get("TQ_PROFILE") or None
    values = _profile(config_path(environ), named)
    home = values.get("url") or DEFAULT_URL
    target_url = url or environ.get("TQ_URL") or home
    own = values.get("token") if _same_gateway(target_url, home) else None
    return Target(url=target_url, token=token or environ.get("TQ_TOKEN") or own or None)


def _same_gateway(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def _profile(path: Path, name: str | None) -> dict[str, str]:
    """The profile ``name`` of the file (``default`` if ``None``; an unnamed default may be missing)."""
    profiles = _profiles(path)
    wanted = name or DEFAULT_PROFILE
    if wanted not in profiles:
        if name is None:
            return {}
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(f"no profile {name!r} in {path} (profiles: {known})")
    table = profiles[wanted]
    if not isinstance(table, dict) or not all(isinstance(table.get(k, ""), str) for k in ("url", "token")):
        raise ConfigError(f"profile {wanted!r} in {path} must be a table of strings (url, token)")
    return {key: value for key, value in table.items() if key in ("url", "token")}


def _profiles(path: Path) -> dict[str, object]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    profiles = document.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"'profiles' in {path} must be a table of [profiles.NAME] tables")
    return profiles
