"""Gateway settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from tqcore.settings import CoreSettings


class GatewaySettings(CoreSettings):
    """How the HTTP API listens, authenticates and decides it is ready."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    gateway_workers: int = Field(default=2, ge=1, le=64)
    gateway_threads: int = Field(default=4, ge=1, le=64)
    #: ``dev``: the contract's dev principals (local stack only).
    auth_mode: Literal["dev"] = "dev"
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    #: Services that must have a live instance before ``/readyz`` answers 200 (comma-separated).
    ready_requires: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("ready_requires", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
