"""Server-Sent Events decoding (the WHATWG event-stream format), line by line, without I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    """One dispatched event of the stream: its ``event`` type, ``data`` and ``id`` (``None`` if it had none)."""

    event: str
    data: str
    id: str | None


class SseDecoder:
    """Feeds lines (without their line ending) and returns a :class:`Message` at each blank line that ends one;
    comments (``: ping``) and ``retry:`` hints are kept out of the messages (``retry_ms`` holds the latest hint)."""

    def __init__(self) -> None:
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Message | None:
        """The message this line completes, if any."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Message | None:
        message = Message(self._event or "message", "\n".join(self._data), self._id) if self._data else None
        self._event, self._data, self._id = "", [], None
        return message
