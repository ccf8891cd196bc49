"""Attachments (photos, scans) on disk with metadata in SQL.

The type is decided by the file's first bytes, never by its name or the
browser's claim; the stored name is a UUID, so no user-supplied path ever
reaches the file system."""
from __future__ import annotations

import hashlib
import os
import unicodedata
import uuid
from pathlib import Path

from .errors import InvalidInput

MB = 1024 * 1024
# (content type, limit in bytes, magic check)
KINDS = [
    ("image/jpeg", 10 * MB, lambda b: b[:3] == b"\xff\xd8\xff"),
    ("image/png", 10 * MB, lambda b: b[:8] == b"\x89PNG\r\n\x1a\n"),
    ("image/gif", 10 * MB, lambda b: b[:6] in (b"GIF87a", b"GIF89a")),
    ("image/webp", 10 * MB, lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    ("application/pdf", 20 * MB, lambda b: b[:5] == b"%PDF-"),
]
ALLOWED = "JPEG, PNG, GIF, WebP images (≤ 10 MB) or PDF (≤ 20 MB)"
ALLOWED_ZH = "JPEG、PNG、GIF、WebP 图片（不超过 10 MB）或 PDF（不超过 20 MB）"


def sniff(data: bytes) -> tuple[str, int] | None:
    for content_type, limit, check in KINDS:
        if check(data[:16]):
            return content_type, limit
    return None


def clean_filename(name: str) -> str:
    """A display name: no directories, no control characters, at most 120 characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = name.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*')
    name = name.strip(" .")
    return (name or "file")[:120]


class AttachmentStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def check(self, filename: str, data: bytes) -> str:
        kind = sniff(data)
        if kind is None:
            raise InvalidInput(f"'{clean_filename(filename)}' is not an accepted file type; upload {ALLOWED}",
                               zh=f"“{clean_filename(filename)}”不是可接受的文件类型；请上传 {ALLOWED_ZH}",
                               fields={"file": [f"accepted: {ALLOWED}"]})
        content_type, limit = kind
        if len(data) > limit:
            raise InvalidInput(f"'{clean_filename(filename)}' is {len(data) / MB:.1f} MB; the limit for "
                               f"{content_type} is {limit // MB} MB",
                               zh=f"“{clean_filename(filename)}”大小为 {len(data) / MB:.1f} MB，"
                                  f"超过上限 {limit // MB} MB",
                               fields={"file": [f"at most {limit // MB} MB"]})
        if not data:
            raise InvalidInput("the file is empty", fields={"file": ["empty file"]}, zh="文件是空的，请重新选择")
        return content_type

    def write(self, data: bytes) -> tuple[str, str, str]:
        """Store bytes; returns (attachment id, relative storage path, sha256)."""
        attachment_id = str(uuid.uuid4())
        relative = Path(attachment_id[:2]) / attachment_id
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        return attachment_id, str(relative), hashlib.sha256(data).hexdigest()

    def path(self, storage_path: str) -> Path:
        resolved = (self.root / storage_path).resolve()
        if self.root.resolve() not in resolved.parents:
            raise InvalidInput("bad storage path", zh="存储路径无效")
        return resolved

    def remove(self, storage_path: str) -> None:
        try:
            self.path(storage_path).unlink()
        except FileNotFoundError:
            pass
