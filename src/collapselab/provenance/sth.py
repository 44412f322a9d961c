"""Tree heads of the ledger, signed as Certificate Transparency signs them (RFC 6962 section 3.5).

A *tree head* commits to the whole ledger in 32 bytes: the RFC 6962 / 9162 Merkle root over all
entries (leaf i is the 32 raw bytes of entry i's ``entry_hash``, in ``seq`` order) and the number
of entries. A *signed tree head* (STH) adds a timestamp, the signer's key id and an Ed25519
signature over CT's ``TreeHeadSignature``, 50 bytes::

    0x00                    version v1
    0x01                    signature type tree_hash
    uint64 big-endian       timestamp, milliseconds since 1970-01-01 UTC
    uint64 big-endian       tree_size
    32 bytes                root_hash

As JSON (an STH file, or ``ledger_head`` in a run's ``summary.json``)::

    {"tree_size": 42, "root_hash": "<64 hex>", "entry_hash": "<64 hex>",
     "timestamp": 1767225600000, "key_id": "<16 hex>", "signature": "<128 hex>"}

``entry_hash`` (the newest entry's hash) is informational and not signed: the root covers it.
An unsigned head has no ``timestamp``, ``key_id`` or ``signature``. The key id is the vault's:
the first 16 hex digits of SHA-256 of the 32 raw bytes of the Ed25519 public key.
"""

from __future__ import annotations

import json
import re
import struct
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from collapselab.errors import UserError
from collapselab.provenance import core

__all__ = ["TreeHead", "head_bytes", "sign_head", "verify_head", "load_head"]

_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class TreeHead:
    """The ledger's Merkle tree head; signed when ``signature`` is set."""

    tree_size: int
    root_hash: str  # 64 hex digits
    entry_hash: str | None = None  # the newest entry's hash (not signed; the root covers it)
    timestamp: int | None = None  # milliseconds since the epoch, UTC
    key_id: str | None = None
    signature: str | None = None  # Ed25519 over head_bytes(...), 128 hex digits

    @property
    def signed(self) -> bool:
        return self.signature is not None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Any, where: str = "tree head") -> "TreeHead":
        """Check and read a head written by :meth:`to_dict`; a malformed one is a UserError."""
        if not isinstance(d, dict):
            raise UserError(f"{where}: not a tree head (expected a JSON object with tree_size and root_hash)")

        def get(key: str, kind: type, hex_len: int | None = None, required: bool = False):
            v = d.get(key)
            if v is None and not required:
                return None
            if not isinstance(v, kind) or isinstance(v, bool) or (kind is int and v < 0) or (
                    hex_len is not None and (len(v) != hex_len or not _HEX.fullmatch(v))):
                shape = f"{hex_len} lowercase hex digits" if hex_len else ("a whole number >= 0" if kind is int else kind.__name__)
                raise UserError(f"{where}: {key} is {v!r:.80}, not {shape}")
            return v

        head = cls(get("tree_size", int, required=True), get("root_hash", str, 64, required=True),
                   get("entry_hash", str, 64), get("timestamp", int), get("key_id", str, 16), get("signature", str, 128))
        if head.signed and (head.timestamp is None or head.key_id is None):
            raise UserError(f"{where}: a signed head needs timestamp and key_id too")
        return head


def head_bytes(tree_size: int, root_hash: str, timestamp: int) -> bytes:
    """CT's ``TreeHeadSignature`` (RFC 6962 section 3.5): the 50 bytes an STH signs."""
    return struct.pack(">BBQQ", 0, 1, timestamp, tree_size) + bytes.fromhex(root_hash)


def sign_head(head: TreeHead, private_key, *, timestamp: int | None = None) -> TreeHead:
    """``head`` signed with an Ed25519 private key, at ``timestamp`` (default: now)."""
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    sig = private_key.sign(head_bytes(head.tree_size, head.root_hash, ts))
    return replace(head, timestamp=ts, key_id=core.key_id(private_key.public_key()), signature=sig.hex())


def verify_head(head: TreeHead, public_key) -> bool:
    """True if ``head`` is signed, by ``public_key`` (key id and signature), over its size and root."""
    from cryptography.exceptions import InvalidSignature

    if not head.signed or head.timestamp is None or head.key_id != core.key_id(public_key):
        return False
    try:
        public_key.verify(bytes.fromhex(head.signature or ""), head_bytes(head.tree_size, head.root_hash, head.timestamp))
    except (InvalidSignature, ValueError, struct.error):
        return False
    return True


def load_head(path: str | Path) -> TreeHead:
    """A tree head from a JSON file: an STH file (`ledger head --json`), or a run's ``summary.json``
    (its ``ledger_head``)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such tree head file. Write one with `collapselab ledger head LEDGER --sign KEY --json > {path}`.") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: cannot read a tree head from it ({e}); pass the JSON that `collapselab ledger head --json` printed.") from None
    if isinstance(d, dict) and "ledger_head" in d:
        d = d["ledger_head"]
    return TreeHead.from_dict(d, str(path))
