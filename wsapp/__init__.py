"""wsapp: a declarative, decorator-based WebSocket server for asyncio and Trio."""

from wsapp.app import App, RouteHandlers
from wsapp.connection import Connection
from wsapp.datastructures import Headers, MutableHeaders, QueryParams
from wsapp.endpoint import Connector
from wsapp.exceptions import ConnectionClosed, JoinRefused, Reject, WriteTimeout
from wsapp.lifespan import LifespanError
from wsapp.messages import InvalidMessage
from wsapp.protocol import CloseCode, Message
from wsapp.request import Address, Request
from wsapp.rooms.publisher import Publisher
from wsapp.server import Server
from wsapp.settings import ConfigError, Settings

__all__ = [
    "Address",
    "App",
    "CloseCode",
    "ConfigError",
    "Connection",
    "ConnectionClosed",
    "Connector",
    "Headers",
    "InvalidMessage",
    "JoinRefused",
    "LifespanError",
    "Message",
    "MutableHeaders",
    "Publisher",
    "QueryParams",
    "Reject",
    "Request",
    "RouteHandlers",
    "Server",
    "Settings",
    "WriteTimeout",
]
