"""A channel server speaking the Centrifugo client protocol v2 (JSON).

Usable on its own by any asyncio application::

    node = Node(NodeConfig(), secret="...")
    await node.start()
    app.add_websocket_route("/connection/websocket", WebSocketEndpoint(node))
    app.router.routes.extend(ServerAPI(node, api_key="...").routes)
    await node.publish("news:1", {"hello": "world"})

It imports nothing from the rest of exporthub.
"""

from exporthub.realtime.broker import HistoryOptions, PresenceStats, StreamPosition
from exporthub.realtime.codes import ApiError, Disconnect, ErrorCode
from exporthub.realtime.node import ChannelOptions, Node, NodeConfig
from exporthub.realtime.protocol import ClientInfo
from exporthub.realtime.server_api import ServerAPI
from exporthub.realtime.tokens import issue as issue_token
from exporthub.realtime.transport import WebSocketEndpoint

__all__ = [
    "ApiError",
    "ChannelOptions",
    "ClientInfo",
    "Disconnect",
    "ErrorCode",
    "HistoryOptions",
    "Node",
    "NodeConfig",
    "PresenceStats",
    "ServerAPI",
    "StreamPosition",
    "WebSocketEndpoint",
    "issue_token",
]
