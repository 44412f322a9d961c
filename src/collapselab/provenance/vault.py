"""The human-data vault: pre-AI human text kept as an anchor, content-addressed and signed.

The article's "data vaults": a store of human text captured before a given date, that nothing
evicts and nothing silently changes, so a training loop can always go back to it. A vault is a
folder::

    collapselab-vault.json      marker: this folder is a vault (format, version, key id)
    vault.pub                   the vault's Ed25519 public key (PEM)
    private/ed25519.key         the signing key (PEM, mode 0600; may live elsewhere, see --signing-key)
    objects/ab/cdef...          one file per distinct text, named by the SHA-256 of its UTF-8 bytes,
                                written atomically and made read-only (0444 under umask 022); never evicted
    index.jsonl                 append-only: one line per object (hash, source, licence,
                                captured_before, added_at, where it came from)
    snapshots/NAME.json         sealed snapshots (read-only), one per name, never overwritten

A *snapshot* lists the sorted distinct content hashes of the vault at sealing time, their count,
the RFC 6962 Merkle root over those hashes (:mod:`collapselab.provenance.merkle`, each hash is one
leaf), the creation time and the key id, plus an Ed25519 signature over the canonical JSON of all
of that. :meth:`Vault.verify` re-hashes every object and checks every snapshot's signature, count
and root; it fails closed (any problem, including one it cannot read, makes the report not ok).

Bad input (a folder that is not a vault, a bad date, a missing or wrong key) raises
:class:`~collapselab.errors.UserError` before anything is written.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from collapselab.atomic import all_or_nothing, atomic_write, check_output_file, check_writable_dir, public_mode
from collapselab.errors import UserError
from collapselab.provenance import core, merkle
from collapselab.provenance.proofs import InclusionProof, hashes_root

__all__ = [
    "Vault",
    "Snapshot",
    "SnapshotRef",
    "AddResult",
    "VerifyReport",
    "InclusionProof",
    "content_hash",
    "parse_date",
    "init_vault",
]

MARKER = "collapselab-vault.json"
FORMAT = "collapselab-vault"
SNAPSHOT_FORMAT = "collapselab-vault-snapshot"
VERSION = 1
PUBLIC_KEY = "vault.pub"
DEFAULT_KEY = Path("private") / "ed25519.key"
INDEX = "index.jsonl"
OBJECTS = "objects"
SNAPSHOTS = "snapshots"
LOCK = ".lock"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


content_hash = core.content_hash  # a document's address: SHA-256 of its UTF-8 bytes


def parse_date(value: str | date, flag: str = "--captured-before") -> str:
    """``YYYY-MM-DD`` checked and normalised; a bad date is a UserError naming ``flag``."""
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise UserError(f"{flag} {value!r}: not a date. Write it as YYYY-MM-DD, e.g. {flag} 2021-12-31.") from None


_root_hex = hashes_root


def _read_only_mode() -> int:
    """Objects and snapshots: read-only, and readable by whom the umask allows (0444 under umask 022)."""
    return public_mode() & 0o444


def _load_public_key(path: Path):
    return core.load_public_key(path, missing_hint="Restore the vault's vault.pub, or pass the right one with --public-key.",
                                wrong_hint="Pass the vault's vault.pub.")


def _load_private_key(path: Path):
    """The signing key; refuses a key file that others can read. Its bytes never reach a message."""
    return core.load_private_key(path, missing_hint="Pass the vault's key with --signing-key.",
                                 wrong_hint="Pass the key `vault init` created.")


def _write_private_key(path: Path, key) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    core.write_secret_file(path, core.private_pem(key), exists_hint="Pass another --signing-key path.")


# ---------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SnapshotRef:
    """What a run stores about the vault data it drew from: enough to find and check it again."""

    vault: str
    snapshot: str
    merkle_root: str
    count: int
    key_id: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Snapshot:
    name: str
    created_at: str
    count: int
    merkle_root: str
    key_id: str
    hashes: tuple[str, ...]
    signature: str

    def body(self) -> dict:
        """Everything the signature covers."""
        return {
            "format": SNAPSHOT_FORMAT,
            "version": VERSION,
            "name": self.name,
            "created_at": self.created_at,
            "count": self.count,
            "merkle_root": self.merkle_root,
            "key_id": self.key_id,
            "hashes": list(self.hashes),
        }

    def to_json(self) -> dict:
        return {**self.body(), "signature": self.signature}


@dataclass
class AddResult:
    added: int = 0
    present: int = 0  # already in the vault (or repeated in this batch)

    @property
    def documents(self) -> int:
        return self.added + self.present


@dataclass
class VerifyReport:
    ok: bool
    objects_checked: int
    snapshots_checked: int
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = "OK" if self.ok else "INVALID"
        lines = [f"{head}: {self.objects_checked} objects, {self.snapshots_checked} snapshots checked, {len(self.problems)} problems"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------- vault


def init_vault(path: str | os.PathLike, *, key: str | os.PathLike | None = None) -> "Vault":
    """Create a vault in ``path`` (new or empty folder) and its Ed25519 key pair.

    The private key goes to ``key`` (default ``path/private/ed25519.key``), created 0600.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    root = Path(path)
    if (root / MARKER).exists():
        raise UserError(f"{root}: already a vault. Use it with --vault {root}.")
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: a file is there, not a folder. Pick a new folder for the vault.")
    if root.exists() and any(root.iterdir()):
        raise UserError(f"{root}: the folder is not empty and not a vault. Pick a new or empty folder for the vault.")
    key_path = Path(key) if key is not None else root / DEFAULT_KEY
    if key_path.exists():
        raise UserError(f"{key_path}: a key file is already there; refusing to overwrite it. Pass another --signing-key path.")
    check_writable_dir(root.parent, "vault")
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    made = [root / n for n in (OBJECTS, SNAPSHOTS, INDEX, PUBLIC_KEY, MARKER)]
    with all_or_nothing(root, *made, key_path.parent, key_path):  # a failed init (a full disk) leaves no half-made vault
        check_output_file(key_path, "signing key")
        root.mkdir(parents=True, exist_ok=True)
        (root / OBJECTS).mkdir()
        (root / SNAPSHOTS).mkdir()
        (root / INDEX).touch()
        _write_private_key(key_path, private)
        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        atomic_write(root / PUBLIC_KEY, lambda tmp: Path(tmp).write_bytes(pem))
        marker = {"format": FORMAT, "version": VERSION, "created_at": core.utc_now(), "key_id": core.key_id(public)}
        # the marker comes last: a folder is a vault only once everything else is in place
        atomic_write(root / MARKER, lambda tmp: Path(tmp).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8"))
    return Vault(root, key=key_path)


class Vault:
    """An existing vault folder. ``Vault(path)`` raises UserError if ``path`` is not one."""

    def __init__(self, path: str | os.PathLike, *, key: str | os.PathLike | None = None):
        self.path = Path(path)
        marker = self.path / MARKER
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path}: a file, not a vault folder. Pass the vault's folder with --vault DIR.")
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such vault folder. Create one with `collapselab vault init {self.path}`.")
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{self.path}: not a vault (no {MARKER}). Create one with `collapselab vault init DIR`, or pass the vault with --vault.") from None
        except (OSError, ValueError, UnicodeDecodeError):
            raise UserError(f"{marker}: unreadable vault marker. Restore it from a backup.") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserError(f"{self.path}: not a vault ({MARKER} is not a vault marker).")
        if meta.get("version") != VERSION:
            raise UserError(f"{self.path}: vault format version {meta.get('version')!r}; this collapselab reads version {VERSION}.")
        self.key_id: str = str(meta.get("key_id", ""))
        self.key_path = Path(key) if key is not None else self.path / DEFAULT_KEY
        self._cache: dict[str, Snapshot] = {}

    def __repr__(self) -> str:
        return f"Vault({str(self.path)!r})"

    # -- paths and small helpers

    def object_path(self, h: str) -> Path:
        return self.path / OBJECTS / h[:2] / h[2:]

    def snapshot_path(self, name: str) -> Path:
        return self.path / SNAPSHOTS / f"{name}.json"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.path / LOCK, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def public_key(self, path: str | os.PathLike | None = None):
        return _load_public_key(Path(path) if path is not None else self.path / PUBLIC_KEY)

    # -- the index

    def index(self) -> Iterator[dict]:
        """The index records, in the order they were added. A malformed line is a UserError."""
        p = self.path / INDEX
        try:
            f = open(p, "rb")
        except FileNotFoundError:
            raise UserError(f"{p}: the vault's index is missing. Restore it from a backup.") from None
        with f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError:
                    raise UserError(f"{p}, line {lineno}: not a JSON record. The index is damaged; restore it from a backup.") from None
                if not isinstance(rec, dict) or not isinstance(rec.get("hash"), str) or not _HEX64.fullmatch(rec["hash"]):
                    raise UserError(f"{p}, line {lineno}: no valid content hash. The index is damaged; restore it from a backup.")
                yield rec

    def hashes(self) -> list[str]:
        """Sorted distinct content hashes of every document in the vault."""
        return sorted({r["hash"] for r in self.index()})

    def records(self) -> dict[str, dict]:
        """Each hash's first index record (its provenance)."""
        out: dict[str, dict] = {}
        for r in self.index():
            out.setdefault(r["hash"], r)
        return out

    # -- adding

    def _store(self, h: str, data: bytes) -> bool:
        """Write one object atomically (temp file + rename) and read-only; False if it was already there.

        Durability is one sync per add() call, not one fsync per object (add() holds the vault's
        lock, so the temp name needs no randomness; verify skips a leftover ``.NAME.tmp``)."""
        p = self.object_path(h)
        if p.exists():
            return False
        p.parent.mkdir(exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.unlink(missing_ok=True)  # a read-only leftover of an add that was killed
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.chmod(tmp, _read_only_mode())
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def add_texts(self, docs: Iterable[tuple[str, str]], *, source: str, licence: str, captured_before: str | date,
                  progress: Callable[[int], None] | None = None) -> AddResult:
        """Store ``(where, text)`` documents; each distinct text becomes one object and one index line.

        All or nothing: when reading ``docs`` fails part-way (a malformed line 58, a full disk), the
        objects and index lines this call wrote are removed again and the error says so.
        ``progress(n)`` is called with the number of documents read so far, every 1,000 documents."""
        captured = parse_date(captured_before)
        if not str(source).strip():
            raise UserError("--source: empty. Say where the documents come from, e.g. --source 'Project Gutenberg'.")
        if not str(licence).strip():
            raise UserError("--licence: empty. Name the documents' licence, e.g. --licence CC-BY-4.0.")
        result = AddResult()
        with self._lock():
            known = {r["hash"] for r in self.index()}
            index_path = self.path / INDEX
            size_before = index_path.stat().st_size
            new: list[str] = []
            try:
                with open(index_path, "a", encoding="utf-8") as index:
                    for n, (where, text) in enumerate(docs, 1):
                        if progress is not None and n % 1000 == 0:
                            progress(n)
                        h = content_hash(text)
                        if h in known:
                            result.present += 1
                            continue
                        if self._store(h, text.encode("utf-8")):  # object first, then its index line
                            new.append(h)
                        rec = {"hash": h, "source": source, "licence": licence, "captured_before": captured, "added_at": core.utc_now(), "where": where}
                        index.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
                        known.add(h)
                        result.added += 1
                    index.flush()
            except BaseException as e:
                self._roll_back(index_path, size_before, new)
                if isinstance(e, (UserError, OSError)):  # a malformed document, a full disk, a read-only vault
                    from collapselab.oserrors import describe

                    what = str(e) if isinstance(e, UserError) else describe(e, "cannot write to the vault") + "."
                    read = result.added + result.present
                    raise UserError(f"{what} Nothing was added to the vault ({read} documents read before it were "
                                    "rolled back); fix that and add again.") from None
                raise
            if result.added:
                os.sync()  # every new object and index line reaches the disk before add() returns
        return result

    def _roll_back(self, index_path: Path, size: int, objects: list[str]) -> None:
        """Undo a failed add: the index back to ``size`` bytes, the objects it stored removed."""
        if index_path.stat().st_size != size:  # nothing to undo when the index could not even be opened
            with open(index_path, "r+b") as f:
                f.truncate(size)
        for h in objects:
            self.object_path(h).unlink(missing_ok=True)

    def add(
        self,
        paths: Sequence[str | os.PathLike] | str | os.PathLike,
        *,
        source: str,
        licence: str,
        captured_before: str | date,
        text_field: str = "text",
        progress: Callable[[int], None] | None = None,
    ) -> AddResult:
        """Add every document of ``paths`` (files, folders or URLs in any format ``read_documents`` reads:
        .txt/.md, .jsonl(.gz/.zst), dolma .json.gz, Parquet, datasets folders); all of them or, when one
        is malformed, none."""
        from collapselab.corpus.readers import read_documents
        from collapselab.pipeline.sources import expand_inputs

        parse_date(captured_before)  # a bad date fails before anything is read or written
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files = expand_inputs(paths)  # a missing path fails before anything is read or written

        def docs() -> Iterator[tuple[str, str]]:
            for f in files:
                yield from read_documents(f, text_field=text_field)

        return self.add_texts(docs(), source=source, licence=licence, captured_before=captured_before, progress=progress)

    # -- snapshots

    def snapshot_names(self) -> list[str]:
        d = self.path / SNAPSHOTS
        return sorted(p.name[: -len(".json")] for p in d.glob("*.json") if not p.name.startswith(".")) if d.is_dir() else []

    def seal(self, name: str | None = None) -> Snapshot:
        """Sign an immutable snapshot of every document now in the vault. A name is sealed once."""
        if name is None:
            name = "snap-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        if not _NAME.fullmatch(name):
            raise UserError(f"--name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
        key = _load_private_key(self.key_path)
        public = self.public_key()
        if not hmac.compare_digest(core.public_raw(key.public_key()), core.public_raw(public)):
            raise UserError(f"{self.key_path}: wrong key, it does not match this vault's public key ({self.key_id}). Pass the vault's key with --signing-key.")
        with self._lock():
            target = self.snapshot_path(name)
            if target.exists():
                raise UserError(f"snapshot {name!r} is already sealed; snapshots are immutable. Pick another --name.")
            hashes = self.hashes()
            missing = [h for h in hashes if not self.object_path(h).is_file()]
            if missing:
                raise UserError(f"{self.object_path(missing[0])}: object missing ({len(missing)} in all); not sealing. Run `collapselab vault verify`.")
            snap = Snapshot(name, core.utc_now(), len(hashes), _root_hex(hashes), core.key_id(public), tuple(hashes), "")
            sig = key.sign(core.canonical_json(snap.body())).hex()
            snap = replace(snap, signature=sig)
            text = json.dumps(snap.to_json(), indent=1) + "\n"

            def write(tmp: str) -> None:
                Path(tmp).write_text(text, encoding="utf-8")
                os.chmod(tmp, _read_only_mode())

            atomic_write(target, write)
        return snap

    def _read_snapshot(self, name: str) -> Snapshot:
        """Parse a snapshot file without checking it (verify does that)."""
        p = self.snapshot_path(name)
        if not _NAME.fullmatch(name) or not p.is_file():
            have = ", ".join(self.snapshot_names()) or "none yet; run `collapselab vault seal`"
            raise UserError(f"no snapshot {name!r} in {self.path} (snapshots: {have}).")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            if d.get("format") != SNAPSHOT_FORMAT:
                raise ValueError("not a vault snapshot")
            return Snapshot(
                name=str(d["name"]),
                created_at=str(d["created_at"]),
                count=int(d["count"]),
                merkle_root=str(d["merkle_root"]),
                key_id=str(d["key_id"]),
                hashes=tuple(str(h) for h in d["hashes"]),
                signature=str(d["signature"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"{p}: unreadable snapshot ({e}). Restore it from a backup.") from None

    def _snapshot_problems(self, snap: Snapshot, public, file_name: str) -> list[str]:
        from cryptography.exceptions import InvalidSignature

        where = f"snapshot {file_name!r}"
        problems = []
        try:
            public.verify(bytes.fromhex(snap.signature), core.canonical_json(snap.body()))
        except (InvalidSignature, ValueError):
            problems.append(f"{where}: bad signature (the file was altered, or signed with another key)")
        if snap.name != file_name:
            problems.append(f"{where}: records the name {snap.name!r}")
        if snap.count != len(snap.hashes):
            problems.append(f"{where}: count {snap.count} but {len(snap.hashes)} hashes listed")
        bad = [h for h in snap.hashes if not _HEX64.fullmatch(h)]
        if bad:
            problems.append(f"{where}: {len(bad)} malformed hashes, first {bad[0][:70]!r}")
        elif list(snap.hashes) != sorted(set(snap.hashes)):
            problems.append(f"{where}: hashes not sorted and distinct")
        if not bad and not hmac.compare_digest(_root_hex(snap.hashes), snap.merkle_root.lower()):
            problems.append(f"{where}: Merkle root {snap.merkle_root[:16]}... does not match its hashes")
        return problems

    def snapshot(self, name: str, *, check: bool = True) -> Snapshot:
        """A sealed snapshot; with ``check`` its signature, count and Merkle root are verified
        (a failed check is a UserError: data from an altered snapshot is never handed out)."""
        snap = self._read_snapshot(name)
        if check:
            problems = self._snapshot_problems(snap, self.public_key(), name)
            if problems:
                raise UserError(f"{problems[0]}. Run `collapselab vault verify {name}`.")
        return snap

    def ref(self, name: str) -> SnapshotRef:
        """The small record a run stores: vault, snapshot name, Merkle root, count, key id."""
        s = self.snapshot(name)
        return SnapshotRef(str(self.path), s.name, s.merkle_root, s.count, s.key_id)

    def _read_object(self, h: str) -> str:
        p = self.object_path(h)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{p}: object missing. Run `collapselab vault verify`.") from None
        if hashlib.sha256(data).hexdigest() != h:
            raise UserError(f"{p}: object altered (its content no longer hashes to its name). Run `collapselab vault verify`.")
        return data.decode("utf-8")

    def texts(self, snapshot: str) -> list[str]:
        """The snapshot's documents in hash order; the snapshot and every object are checked."""
        snap = self._cache.get(snapshot) or self.snapshot(snapshot)
        self._cache[snapshot] = snap
        return [self._read_object(h) for h in snap.hashes]

    def sample(self, snapshot: str, n: int, seed: int) -> list[tuple[str, str]]:
        """``n`` distinct documents ``(hash, text)`` drawn from a snapshot by ``numpy`` from ``seed``, in hash order."""
        snap = self.snapshot(snapshot)
        if n < 0 or n > snap.count:
            raise UserError(f"N={n}: snapshot {snapshot!r} holds {snap.count} documents; ask for 0 to {snap.count}.")
        idx = np.sort(np.random.default_rng(seed).choice(snap.count, size=n, replace=False))
        return [(snap.hashes[i], self._read_object(snap.hashes[i])) for i in idx.tolist()]

    def inclusion_proof(self, snapshot: str, h: str) -> InclusionProof:
        """Proof that content hash ``h`` is in the snapshot, checkable against its signed root alone."""
        snap = self.snapshot(snapshot)
        h = h.lower()
        try:
            i = snap.hashes.index(h)
        except ValueError:
            raise UserError(f"{h}: not in snapshot {snapshot!r}.") from None
        path = merkle.inclusion_proof([bytes.fromhex(x) for x in snap.hashes], i)
        return InclusionProof(snapshot, h, i, snap.count, tuple(p.hex() for p in path), snap.merkle_root)

    def latest_snapshot(self) -> str:
        snaps = [self._read_snapshot(n) for n in self.snapshot_names()]
        if not snaps:
            raise UserError(f"{self.path}: no sealed snapshot yet. Run `collapselab vault seal`.")
        return max(snaps, key=lambda s: (s.created_at, s.name)).name

    # -- verification

    def verify(self, snapshot: str | None = None, *, public_key: str | os.PathLike | None = None) -> VerifyReport:
        """Re-hash objects and check snapshots; fails closed. With ``snapshot``, only it and its objects.

        ``public_key`` is a trusted copy of the vault's public key kept elsewhere; if it is not the
        key in the vault, that is a UserError (wrong key).
        """
        public = self.public_key()
        if public_key is not None:
            trusted = self.public_key(public_key)
            if not hmac.compare_digest(core.public_raw(trusted), core.public_raw(public)):
                raise UserError(f"{public_key}: wrong key, it is not this vault's public key (key id {core.key_id(trusted)}, the vault holds {core.key_id(public)}).")
        problems: list[str] = []
        if core.key_id(public) != self.key_id:
            problems.append(f"{PUBLIC_KEY}: key id {core.key_id(public)} is not the one the vault was made with ({self.key_id})")

        names = [snapshot] if snapshot is not None else self.snapshot_names()
        if snapshot is not None:
            self._read_snapshot(snapshot)  # unknown name: UserError, exit 2
        wanted: set[str] | None = set() if snapshot is not None else None
        n_snaps = 0
        for name in names:
            n_snaps += 1
            try:
                snap = self._read_snapshot(name)
            except UserError as e:
                problems.append(str(e))
                continue
            problems += self._snapshot_problems(snap, public, name)
            if wanted is not None:
                wanted.update(h for h in snap.hashes if _HEX64.fullmatch(h))
            for h in snap.hashes:
                if _HEX64.fullmatch(h) and not self.object_path(h).is_file():
                    problems.append(f"snapshot {name!r}: object {h} missing")

        try:
            indexed = set(self.hashes())
        except UserError as e:
            problems.append(str(e))
            indexed = set()

        n_objects = 0
        objects = self.path / OBJECTS
        seen: set[str] = set()
        for p in sorted(objects.rglob("*")) if objects.is_dir() else []:
            if p.is_dir() or (p.name.startswith(".") and p.name.endswith(".tmp")):
                continue  # a directory, or a write interrupted before its rename
            rel = p.relative_to(self.path).as_posix()
            h = p.parent.name + p.name
            if not (len(p.parent.name) == 2 and _HEX64.fullmatch(h) and p.parent.parent == objects):
                problems.append(f"{rel}: stray file, not a content-addressed object")
                continue
            if wanted is not None and h not in wanted:
                continue
            n_objects += 1
            seen.add(h)
            try:
                actual = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError as e:
                problems.append(f"{rel}: unreadable ({e.strerror})")
                continue
            if actual != h:
                problems.append(f"{rel}: content altered (hashes to {actual[:16]}..., not its name)")
            if snapshot is None and h not in indexed:
                problems.append(f"{rel}: not in the index")
        if snapshot is None:
            for h in sorted(indexed - seen):
                problems.append(f"{self.object_path(h).relative_to(self.path).as_posix()}: in the index but missing")
        return VerifyReport(not problems, n_objects, n_snaps, problems)
