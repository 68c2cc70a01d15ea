"""Accounts: who people are, how they prove it, how others find them, and whether they are online.

- `users`: a user, the contract's User object, username and display name rules;
- `phrases`: passphrase rules, and bcrypt in a bounded line;
- `sessions`: tokens, who a request is (a cache of validated sessions), revoking a session (its sockets
  close and every worker's cache forgets it);
- `throttle`: failed logins, counted in PostgreSQL;
- `flows`: register (open, by invite, or closed), log in, one's profile and phrase; suspension;
- `invites`: invitations to register, their codes and uses;
- `blocks`: who keeps whom away (contract v1.2);
- `people`: the other party of a conversation, and the lookup before a first message;
- `presence`: who is online, across workers, told to conversation partners.
"""

from secure_link.accounts import invites, presence
from secure_link.accounts.blocks import block, kept_apart, list_blocks, unblock
from secure_link.accounts.flows import (WRONG_PHRASE, AccountServices, avatar_changed, change_phrase, check_phrase,
                                        find_account, login, profile, register, retired_tag, suspend, update_profile)
from secure_link.accounts.people import find_peer, find_person
from secure_link.accounts.phrases import PhraseHasher
from secure_link.accounts.presence import TooManySockets
from secure_link.accounts.sessions import (SESSION_COOKIE, SessionCache, SessionSockets, authenticate,
                                           close_ended_sessions, close_sessions_sockets, list_sessions, revoke_session,
                                           token_from, user_for_token)
from secure_link.accounts.users import User, fold_username, user_json

__all__ = ["SESSION_COOKIE", "WRONG_PHRASE", "AccountServices", "PhraseHasher", "SessionCache", "SessionSockets",
           "TooManySockets", "User", "authenticate", "avatar_changed", "block", "change_phrase", "check_phrase",
           "close_ended_sessions", "close_sessions_sockets", "find_account", "find_peer", "find_person",
           "fold_username", "invites", "kept_apart", "list_blocks", "list_sessions", "login", "presence", "profile",
           "register", "retired_tag", "revoke_session", "suspend", "token_from", "unblock", "update_profile",
           "user_for_token", "user_json"]
