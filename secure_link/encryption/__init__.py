"""Encryption at rest: nothing the server stores or hands to the fan-out is in plaintext.

- `aead`: AES-256-GCM for small values (bodies, wrapped keys), bound to a context;
- `contexts`: every context and label, in one place;
- `keyring`: the master keys this process holds (in a file, never in the database);
- `datakeys`: each conversation's and file's own key, wrapped in the database, and the
  master key checked against them at start;
- `bodies`: message bodies sealed with their conversation's key;
- `sealedfile`: files sealed in segments, readable from any byte;
- `secretfile`: the files that hold secrets (the master key, the pepper);
- `rotation`: `secure-link keys rotate`; `epochs`: the master key's steps after erasures.
"""

from secure_link.encryption import aead, contexts, epochs, rotation, sealedfile, secretfile
from secure_link.encryption.aead import DecryptionError
from secure_link.encryption.bodies import BodyKeys, Pair, pair_of
from secure_link.encryption.datakeys import (Generation, forget_conversation_keys, insert_wrapped, master_key_path,
                                             open_keyring)
from secure_link.encryption.keyring import Keyring

__all__ = ["BodyKeys", "DecryptionError", "Generation", "Keyring", "Pair", "aead", "contexts", "epochs",
           "forget_conversation_keys", "insert_wrapped", "master_key_path", "open_keyring", "pair_of", "rotation",
           "sealedfile", "secretfile"]
