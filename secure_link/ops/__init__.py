"""Operating the server: what an operator sees and runs beside the chat itself.

- `metrics`: Prometheus metrics, summed over a host's workers; `logs`: JSON or text lines;
- `drain`: a shutdown waits for in-flight acks; `devdb`: the embedded PostgreSQL, when
  DATABASE_URL is unset; `audit`: `secure-link audit`, what was promised erased and is not.
"""

from secure_link.ops import devdb
from secure_link.ops.audit import Finding, audit
from secure_link.ops.drain import InFlight, defer_shutdown_signals
from secure_link.ops.logs import log_config
from secure_link.ops.metrics import Metrics

__all__ = ["Finding", "InFlight", "Metrics", "audit", "defer_shutdown_signals", "devdb", "log_config"]
