"""The built-in server: listeners, the accept loop, the handshake on the wire, the socket
transport, and the runner that serves until shutdown.

- `listeners`: TCP, unix and TLS listening sockets; the accept loop that survives running out
  of file descriptors;
- `accept`: one accepted stream: TLS, the request head, then the shared accept sequence;
- `transport`: the socket transport, one connection's frames both ways;
- `runner`: `Server` (start-up and shutdown hooks, signals, graceful shutdown) and
  `run_server`.
"""

from wsapp.server.runner import Backend, Server, run_server

__all__ = ["Backend", "Server", "run_server"]
