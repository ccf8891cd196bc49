"""Attachments (photos, scans) on disk with metadata in SQL.

The type is decided by the file's first bytes, never by its name or the
browser's claim; a name that says another accepted type than the content is
refused (x.pdf holding a PNG). The stored name is a UUID, so no user-supplied
path ever reaches the file system."""
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
# the names each accepted type goes by: (file name endings, English, Chinese)
NAMES = {
    "image/jpeg": ((".jpg", ".jpeg", ".jpe", ".jfif"), "a JPEG image", "JPEG 图片"),
    "image/png": ((".png",), "a PNG image", "PNG 图片"),
    "image/gif": ((".gif",), "a GIF image", "GIF 图片"),
    "image/webp": ((".webp",), "a WebP image", "WebP 图片"),
    "application/pdf": ((".pdf",), "a PDF document", "PDF 文件"),
}
ALLOWED = "JPEG, PNG, GIF, WebP images (≤ 10 MB) or PDF (≤ 20 MB)"
ALLOWED_ZH = "JPEG、PNG、GIF、WebP 图片（不超过 10 MB）或 PDF（不超过 20 MB）"


def sniff(data: bytes) -> tuple[str, int] | None:
    for content_type, limit, check in KINDS:
        if check(data[:16]):
            return content_type, limit
    return None


def named_type(filename: str) -> tuple[str, str] | None:
    """(the ending, the content type) an accepted type's ending of `filename` names, e.g.
    (".pdf", "application/pdf"); None for a name with no ending or another one."""
    suffix = Path(clean_filename(filename)).suffix.lower()
    for content_type, (endings, _en, _zh) in NAMES.items():
        if suffix in endings:
            return suffix, content_type
    return None


def mismatch(filename: str, content_type: str) -> tuple[str, str, str] | None:
    """(the name's ending, what the content is in English, in Chinese) when the name says one
    accepted type and the content is another (x.pdf holding a PNG): stored as named, it would
    be opened, forwarded and archived as what it is not. A name without such an ending
    (a phone's `mmexport1690…`) is taken for what its content is."""
    named = named_type(filename)
    if named is None or named[1] == content_type:
        return None
    _endings, en, zh = NAMES[content_type]
    return named[0], en, zh


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
        name, wrong, most = clean_filename(filename), mismatch(filename, content_type), limit // MB
        if len(data) > limit:
            size = f"{len(data) / MB:.1f}"
            if wrong is not None:   # both at once: renaming alone would only meet the size refusal
                suffix, en, zh = wrong
                raise InvalidInput(f"'{name}' has two problems: it is {size} MB, over the {most} MB limit "
                                   f"for {en}, and it is named {suffix} but holds {en}; choose a file of at most "
                                   f"{most} MB and correct the file name",
                                   zh=f"“{name}”有两处问题：内容是 {zh}，大小为 {size} MB，超过此类文件的上限 "
                                      f"{most} MB；文件名为 {suffix}，与内容不符。请选择不超过 {most} MB "
                                      "的文件，并改正文件名",
                                   fields={"file": [f"at most {most} MB", f"named {suffix} but holds {en}"]},
                                   fields_zh={"file": [f"不能超过 {most} MB",
                                                       f"文件名为 {suffix}，但内容是 {zh}；请改正文件名"]})
            raise InvalidInput(f"'{name}' is {size} MB; the limit for {content_type} is {most} MB",
                               zh=f"“{name}”大小为 {size} MB，超过上限 {most} MB",
                               fields={"file": [f"at most {most} MB"]},
                               fields_zh={"file": [f"不能超过 {most} MB"]})
        if not data:
            raise InvalidInput("the file is empty", fields={"file": ["empty file"]}, zh="文件是空的，请重新选择")
        if wrong is not None:
            suffix, en, zh = wrong
            raise InvalidInput(f"'{name}' is named {suffix} but holds {en}; correct the file name or choose "
                               "the file again",
                               zh=f"“{name}”的文件名为 {suffix}，但内容是 {zh}；请改正文件名或重新选择文件",
                               fields={"file": [f"named {suffix} but holds {en}"]},
                               fields_zh={"file": [f"文件名为 {suffix}，但内容是 {zh}；请改正文件名或重新选择文件"]})
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
