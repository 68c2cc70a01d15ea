"""Chat: sending, reading and erasing private messages between two people.

- `frames`: what a client asks (a REST body or a socket frame), one parser each;
- `messages`: send (one path for REST and the socket), history, conversations, sync, read, typing;
- `writer`: the worker's group commit, where every send is stored;
- `timers`: a conversation's disappearing-message timer;
- `erasure`: delete for everyone, and the expiry sweeper;
- `clearing`: whole conversations cleared: logout's, and deleting an account.
"""

from secure_link.chat.clearing import AccountErasure, delete_account, erase_account, logout
from secure_link.chat.erasure import delete_for_everyone, run_sweeper
from secure_link.chat.frames import (Draft, parse_delete, parse_draft, parse_read, parse_sync, parse_timer,
                                     parse_typing)
from secure_link.chat.messages import (ChatServices, announce_messages, conversations, history, mark_read, replay,
                                       send_message, stored_message, typing)
from secure_link.chat.timers import get_timer, parse_seconds, set_timer
from secure_link.chat.writer import CLIENT_ID_MEMORY_DAYS, MessageWriter, client_tag_key

__all__ = ["CLIENT_ID_MEMORY_DAYS", "AccountErasure", "ChatServices", "Draft", "MessageWriter", "announce_messages",
           "client_tag_key", "conversations", "delete_account", "delete_for_everyone", "erase_account", "get_timer",
           "history", "logout", "mark_read", "parse_delete", "parse_draft", "parse_read", "parse_seconds", "parse_sync",
           "parse_timer", "parse_typing", "replay", "run_sweeper", "send_message", "set_timer", "stored_message",
           "typing"]
