"""Files: attachments and avatars, stored sealed under MEDIA_ROOT, served only to those allowed.

- `uploads`: the upload flow (receive, check, store, record) and the File object;
- `multipart`: reading an upload's body, and what its bytes are;
- `images`: images decoded and re-encoded from pixels alone;
- `downloads`: serving a file, decrypted as it is sent;
- `cleanup`: rows deleted, files unlinked after, leftovers swept.
"""

from secure_link.files.cleanup import collect_garbage, delete_files, unlink_doomed
from secure_link.files.downloads import serve
from secure_link.files.images import return_freed_pixels_to_the_system
from secure_link.files.uploads import FileServices, file_json, upload

__all__ = ["FileServices", "collect_garbage", "delete_files", "file_json", "return_freed_pixels_to_the_system",
           "serve", "unlink_doomed", "upload"]
