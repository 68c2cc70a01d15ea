"""The fan-out: what one worker publishes reaches every worker's sockets subscribed to it.

- `core`: `Fanout` (publish, subscribe, bounded queues, GAP after any loss) and `Outgoing`;
- `events`: every frame the server sends, one constructor each, and the envelope they travel in;
- `seal`: payloads sealed in transit, a chat event under its conversation's key;
- `backends/`: the transports, chosen by URL scheme (memory, PostgreSQL, Redis).
"""

from secure_link.fanout import events
from secure_link.fanout.backends.base import GAP, Gap
from secure_link.fanout.core import Fanout, Outgoing, Subscription, SubscriptionClosed, SubscriptionOverflow
from secure_link.fanout.events import Event
from secure_link.fanout.seal import ConversationKey, EnvelopeSeal

__all__ = ["GAP", "ConversationKey", "EnvelopeSeal", "Event", "Fanout", "Gap", "Outgoing", "Subscription",
           "SubscriptionClosed", "SubscriptionOverflow", "events"]
