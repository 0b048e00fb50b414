"""Local-directory adapter of the objects port (the embedded default, `file:///data/objects`).

Layout under the root:

    <key>                            the object's bytes, a plain file (`sources/vid_abc/original`)
    .avc/meta/<key>                  sidecar JSON: etag, content type, the data file's fingerprint
    .avc/multipart/<upload_id>/      upload.json, the staged parts (layout: local_parts)
    .avc/tmp/                        temp files, renamed into place once complete and fsynced
    .avc/trash/                      staging dirs of completed/aborted uploads, being removed

Keys are files, so unlike S3 `a` and `a/b` cannot both exist: the second put raises InvalidKey.

The store is split by concern: local_store.py (core: layout, sidecars, put/get/stat/list/delete,
trash), local_multipart.py (multipart uploads, placed parts), local_files.py (temp files, fsync),
local_parts.py (staging layout of parts), local_prefix_hash.py (SHA-256 while parts land).
"""

from avc_common.objects.local_files import FaultHook
from avc_common.objects.local_multipart import LocalObjectStore

__all__ = ["FaultHook", "LocalObjectStore"]
