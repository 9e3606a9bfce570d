"""Request bodies read at send time, in chunks, as curl 7.88 builds them: `-T FILE` (a
PUT of the file, `-T -` stdin with chunked framing), `-F` (multipart/form-data), `-d`.

An `Upload` is a list of pieces, each bytes or a file read in `CHUNK`-byte reads when
the body goes out (never whole into memory), with its length known beforehand from the
files' sizes (curl stats them too) or unknown for stdin (chunked transfer coding). A
file that cannot be read or changes size while it is sent is an `UploadError`.

The names users import live in modules of their own: `upload_body` (`Upload`, the
pieces, `-T`), `upload_form` (-F's parameters), `upload_multipart` (-F's body) and
`upload_encode` (its encoders).
"""

from __future__ import annotations

from packetlab.measure.upload_body import (
    CHUNK,
    EXPECT_THRESHOLD,
    Upload,
    UploadError,
    file_upload,
    stdin_is_regular,
)
from packetlab.measure.upload_form import (
    ENCODERS,
    FormPart,
    Forms,
    content_type_for,
    parse_form,
    read_headers_file,
)
from packetlab.measure.upload_multipart import multipart

__all__ = [
    "CHUNK",
    "ENCODERS",
    "EXPECT_THRESHOLD",
    "FormPart",
    "Forms",
    "Upload",
    "UploadError",
    "content_type_for",
    "file_upload",
    "multipart",
    "parse_form",
    "read_headers_file",
    "stdin_is_regular",
]
