"""wsapp: a declarative, decorator-based WebSocket server for asyncio and Trio."""

from wsapp.app import App
from wsapp.connection import Connection, ConnectionClosed, Message, WriteTimeout
from wsapp.datastructures import Headers, MutableHeaders, QueryParams
from wsapp.endpoint import Connector
from wsapp.lifecycle import Reject
from wsapp.lifespan import LifespanError
from wsapp.messages import InvalidMessage
from wsapp.request import Address, Request
from wsapp.server import Server
from wsapp.settings import ConfigError, Settings

__all__ = [
    "Address",
    "App",
    "ConfigError",
    "Connection",
    "ConnectionClosed",
    "Connector",
    "Headers",
    "InvalidMessage",
    "LifespanError",
    "Message",
    "MutableHeaders",
    "QueryParams",
    "Reject",
    "Request",
    "Server",
    "Settings",
    "WriteTimeout",
]
