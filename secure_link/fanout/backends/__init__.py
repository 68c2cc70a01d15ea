"""The transports under the fan-out, one module each, chosen by a URL's scheme (`core.backend_for`):
`memory`, `postgres` (LISTEN/NOTIFY) and `redis` (pub/sub, imported only when a URL names it)."""

from secure_link.fanout.backends.base import GAP, LISTEN_NAME, Backend, Deliver, Gap

__all__ = ["GAP", "LISTEN_NAME", "Backend", "Deliver", "Gap"]
