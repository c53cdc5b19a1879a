"""JSON codec of the Centrifugo client protocol v2.

A WebSocket text frame holds one or more JSON objects separated by newlines:
commands from the client, replies and pushes from the server. The codec is
pure: bytes in, dicts out, and back. Publication payloads are already JSON;
they are embedded as :class:`orjson.Fragment` so a publication is encoded
once per channel and never parsed again on its way to subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

EMPTY_OBJECT = b"{}"
"""A server ping, and a client pong, are both an empty object."""


class ProtocolError(ValueError):
    """The frame is not a sequence of JSON command objects."""


@dataclass(frozen=True, slots=True)
class Publication:
    """One message in a channel's stream.

    Attributes:
        data: the payload, already encoded as JSON.
        offset: position in the channel's history, 0 when it keeps none.
        time_ms: publication time as Unix milliseconds.
        epoch: the epoch of the stream the offset belongs to; kept on the
            server to notice a stream that restarted, not sent to clients
            (the protocol gives the epoch in subscribe results).
    """

    data: bytes
    offset: int = 0
    time_ms: int = 0
    epoch: str = ""

    def to_wire(self) -> dict[str, Any]:
        """The ``Publication`` object of the protocol."""
        wire: dict[str, Any] = {"data": orjson.Fragment(self.data)}
        if self.offset:
            wire["offset"] = self.offset
        return wire


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who is subscribed: shown in presence and in join/leave pushes.

    Attributes:
        user: the user of the connection ("" for anonymous).
        client: the connection's unique id.
        chan_info: optional JSON attached to this subscription.
    """

    user: str
    client: str
    chan_info: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        """The ``ClientInfo`` object of the protocol."""
        wire: dict[str, Any] = {"user": self.user, "client": self.client}
        if self.chan_info is not None:
            wire["chan_info"] = orjson.Fragment(self.chan_info)
        return wire


def decode_commands(frame: bytes | str) -> list[dict[str, Any]]:
    """Split a frame into command objects.

    Raises:
        ProtocolError: a line is not JSON, or not a JSON object, or the frame
            holds no command at all.
    """
    if isinstance(frame, str):
        frame = frame.encode()
    commands = []
    for line in frame.split(b"\n"):
        if not line.strip():
            continue
        try:
            command = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ProtocolError(f"malformed JSON: {exc}") from exc
        if not isinstance(command, dict):
            raise ProtocolError("a command must be a JSON object")
        commands.append(command)
    if not commands:
        raise ProtocolError("empty frame")
    return commands


def encode(message: dict[str, Any]) -> bytes:
    """One reply or push, without the newline that separates messages."""
    return orjson.dumps(message)


def encode_reply(command_id: int, method: str, result: dict[str, Any]) -> bytes:
    """A successful reply to command ``command_id``."""
    return orjson.dumps({"id": command_id, method: result})


def encode_error(command_id: int, error: dict[str, Any]) -> bytes:
    """An error reply to command ``command_id``."""
    return orjson.dumps({"id": command_id, "error": error})


def encode_publication_push(channel: str, publication: Publication) -> bytes:
    """The push that delivers ``publication`` to a subscriber of ``channel``.

    The result is the same for every subscriber, so it is built once.
    """
    return orjson.dumps({"push": {"channel": channel, "pub": publication.to_wire()}})


def encode_join_leave_push(channel: str, kind: str, info: ClientInfo) -> bytes:
    """A ``join`` or ``leave`` push (``kind``) about ``info``, built once per
    event for every subscriber that receives it."""
    return orjson.dumps({"push": {"channel": channel, kind: {"info": info.to_wire()}}})


def encode_push(channel: str, kind: str, body: dict[str, Any]) -> bytes:
    """Any other push: ``subscribe``, ``unsubscribe``, ``join``, ``leave``..."""
    return orjson.dumps({"push": {"channel": channel, kind: body}})
