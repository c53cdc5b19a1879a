"""The JSON codec of the client protocol, without sockets."""

import orjson
import pytest

from exporthub.realtime import protocol
from exporthub.realtime.protocol import ProtocolError, Publication


def test_one_frame_may_hold_several_commands_separated_by_newlines() -> None:
    frame = b'{"id":1,"connect":{"token":"t"}}\n{"id":2,"subscribe":{"channel":"a"}}\n'
    assert protocol.decode_commands(frame) == [
        {"id": 1, "connect": {"token": "t"}},
        {"id": 2, "subscribe": {"channel": "a"}},
    ]


def test_text_frames_decode_like_bytes() -> None:
    assert protocol.decode_commands('{"id":1,"ping":{}}') == [{"id": 1, "ping": {}}]


def test_an_empty_object_is_a_pong() -> None:
    assert protocol.decode_commands(b"{}") == [{}]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b'{"id":1,', "malformed JSON"),
        (b"[1,2]", "a command must be a JSON object"),
        (b"  \n ", "empty frame"),
        (b'"text"', "a command must be a JSON object"),
    ],
)
def test_frames_that_are_not_commands_are_refused(frame: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        protocol.decode_commands(frame)


def test_a_publication_push_embeds_the_payload_without_reencoding_it() -> None:
    payload = b'{"event":"job.created","n":1}'
    push = protocol.encode_publication_push("exports:u", Publication(payload, 7))
    assert push == (
        b'{"push":{"channel":"exports:u","pub":{"data":'
        b'{"event":"job.created","n":1},"offset":7}}}'
    )


def test_a_publication_without_history_has_no_offset() -> None:
    push = protocol.encode_publication_push("c", Publication(b"1"))
    assert orjson.loads(push) == {"push": {"channel": "c", "pub": {"data": 1}}}


def test_replies_and_errors_carry_the_command_id() -> None:
    assert protocol.encode_reply(3, "unsubscribe", {}) == b'{"id":3,"unsubscribe":{}}'
    assert (
        protocol.encode_error(4, {"code": 103, "message": "permission denied"})
        == b'{"id":4,"error":{"code":103,"message":"permission denied"}}'
    )
