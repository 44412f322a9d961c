"""Content credentials: C2PA manifests on generated PNG images, signed sidecars on text shards.

One local certificate chain signs both: ``init_credentials(DIR)`` makes a root CA and a leaf
signing certificate (ES256, P-256). ``c2pa-python`` rejects a lone self-signed certificate, so the
leaf is issued by the root and carries the extensions C2PA asks of a signer: key usage
digitalSignature, extended key usage emailProtection, not a CA, subject/authority key identifiers.

* Images: :func:`sign_png` embeds a C2PA manifest (digital source type *trained algorithmic
  media*, a ``c2pa.created`` action and an ``org.collapselab.generation`` assertion holding the
  model id and generation).
* Text: C2PA does not cover text or JSONL, so :func:`sign_text_shard` writes ``PATH.manifest.json``
  next to the shard: the shard's SHA-256, one hash per document (per line for ``.jsonl``, the file
  for ``.txt``), origin, model, generation, creation time, the certificate chain, and an ECDSA
  P-256 signature over all of it.

:func:`verify` reads either and says *valid* (signature and hashes check out), *trusted* (and the
chain ends at the given trust anchor) or *invalid*. It fails closed: anything it cannot check is
invalid. Bad input (missing file, unsupported format, missing credentials, a key that does not
belong to the certificate) raises :class:`~collapselab.errors.UserError`.

Private keys are written 0600 and never printed, logged or put into an error message.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from collapselab.atomic import all_or_nothing, atomic_write, atomic_write_text, check_output_file, check_writable_dir
from collapselab.errors import UserError
from collapselab.provenance import core

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATION_LABEL = "org.collapselab.generation"
SIDECAR_SUFFIX = ".manifest.json"
SIDECAR_FORMAT = "collapselab.text-manifest/1"
TEXT_SUFFIXES = (".jsonl", ".txt", ".parquet")  # a Parquet shard is hashed as one document

ROOT_CERT = "root.pem"
ROOT_KEY = "root.key"
LEAF_CERT = "leaf.pem"
LEAF_KEY = "leaf.key"
CHAIN = "chain.pem"  # leaf then root, as c2pa wants it

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# The certificate chain
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialsPaths:
    folder: Path
    root_cert: Path
    root_key: Path
    leaf_cert: Path
    leaf_key: Path
    chain: Path

    @classmethod
    def of(cls, folder: Union[str, os.PathLike]) -> "CredentialsPaths":
        f = Path(folder)
        return cls(f, f / ROOT_CERT, f / ROOT_KEY, f / LEAF_CERT, f / LEAF_KEY, f / CHAIN)


def _write_private(path: Path, data: bytes) -> None:
    core.write_secret_file(path, data)


def _write_public(path: Path, data: bytes) -> None:
    """Create a certificate file; it follows the umask, as any file others must read."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_all(files: list[tuple[Path, bytes, bool]]) -> None:
    """Write each ``(path, data, secret)`` under a temporary name, then rename them all: a failure part-way
    (a full disk) leaves the folder as it was, the old credentials of ``init --force`` included."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data, secret in files:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.unlink(missing_ok=True)
            staged.append((tmp, path))
            (_write_private if secret else _write_public)(tmp, data)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "collapselab"),
    ])


def init_credentials(
    folder: Union[str, os.PathLike],
    *,
    name: str = "collapselab",
    days: int = 3650,
    force: bool = False,
) -> CredentialsPaths:
    """Create a root CA and a leaf signing certificate (both P-256) in ``folder``.

    Refuses to overwrite existing keys unless ``force``. Returns the paths; never the keys.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    paths = CredentialsPaths.of(folder)
    if paths.folder.exists() and not paths.folder.is_dir():
        raise UserError(f"{paths.folder}: exists and is not a folder. Give a new or empty folder for the credentials.")
    existing = [p.name for p in (paths.root_key, paths.leaf_key, paths.root_cert, paths.leaf_cert) if p.exists()]
    if existing and not force:
        raise UserError(f"{paths.folder}: already holds credentials ({', '.join(existing)}); refusing to overwrite them. Use another folder or --force.")
    check_writable_dir(paths.folder.parent, "credentials folder")

    now = _dt.datetime.now(_dt.timezone.utc)
    start = now - _dt.timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{name} root CA")
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} signer"))
        .issuer_name(root_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + _dt.timedelta(days=min(days, 3650)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )

    def pem(c) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)

    def key_bytes(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    with all_or_nothing(paths.folder):  # a failed init (a full disk) leaves no half-made folder
        paths.folder.mkdir(parents=True, exist_ok=True)
        # the certificates are public: they follow the umask; only the keys are 0600
        _write_all([(paths.root_key, key_bytes(root_key), True), (paths.leaf_key, key_bytes(leaf_key), True),
                    (paths.root_cert, pem(root), False), (paths.leaf_cert, pem(leaf), False),
                    (paths.chain, pem(leaf) + pem(root), False)])
    return paths


@dataclass(frozen=True)
class _Signing:
    leaf: Any  # x509.Certificate
    chain_pem: bytes
    key: Any  # EllipticCurvePrivateKey; never printed
    key_pem: bytes = field(repr=False)


def check_credentials(folder: Union[str, os.PathLike]) -> None:
    """Fail (UserError) unless ``folder`` holds a usable signing chain and key."""
    _load_signing(folder)


def _load_signing(folder: Union[str, os.PathLike]) -> _Signing:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    paths = CredentialsPaths.of(folder)
    if not paths.folder.is_dir():
        raise UserError(f"{paths.folder}: no such credentials folder. Create one with `collapselab credentials init {paths.folder}`.")
    for p in (paths.leaf_key, paths.chain):
        if not p.is_file():
            raise UserError(f"{p}: missing. {paths.folder} is not a complete credentials folder; create one with `collapselab credentials init DIR`.")
    try:
        chain_pem = paths.chain.read_bytes()
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise UserError(f"{paths.chain}: not a PEM certificate chain. Recreate the folder with `collapselab credentials init DIR`.") from None
    try:
        key_pem = paths.leaf_key.read_bytes()
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        # No detail from the parser: it may quote key material.
        raise UserError(f"{paths.leaf_key}: not an unencrypted PEM private key. Recreate the folder with `collapselab credentials init DIR`.") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise UserError(f"{paths.leaf_key}: not a P-256 (ES256) key. Recreate the folder with `collapselab credentials init DIR`.")
    leaf = certs[0]
    if leaf.public_key().public_numbers() != key.public_key().public_numbers():
        raise UserError(f"{paths.leaf_key}: wrong key: it does not belong to the signing certificate in {paths.chain}.")
    return _Signing(leaf=leaf, chain_pem=chain_pem, key=key, key_pem=key_pem)


def _load_anchor(trust: Union[str, os.PathLike]):
    """The trust anchor: a credentials folder (its root.pem) or a PEM certificate file."""
    from cryptography import x509

    p = Path(trust)
    if p.is_dir():
        p = p / ROOT_CERT
    if not p.is_file():
        raise UserError(f"{trust}: no trust anchor there. Give a credentials folder (with {ROOT_CERT}) or a PEM certificate file.")
    try:
        pem = p.read_bytes()
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise UserError(f"{p}: not a PEM certificate. Give a credentials folder (with {ROOT_CERT}) or a PEM certificate file.") from None
    return certs, pem


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class VerifyResult:
    """What :func:`verify` found. ``ok`` is the fail-closed verdict the CLI's exit code follows."""

    path: Path
    kind: str  # "image" or "text"
    valid: bool
    trusted: Optional[bool]  # None when no trust anchor was given
    problems: list[str] = field(default_factory=list)
    model_id: Optional[str] = None
    generation: Optional[int] = None
    origin: Optional[str] = None
    signer: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.valid and self.trusted is not False

    @property
    def status(self) -> str:
        if not self.valid:
            return "invalid"
        if self.trusted is None:
            return "valid"
        return "trusted" if self.trusted else "invalid (valid signature, not trusted)"

    def __str__(self) -> str:
        head = f"{self.path}: {self.status}"
        bits = []
        if self.signer:
            bits.append(f"signer {self.signer!r}")
        if self.model_id is not None:
            bits.append(f"model {self.model_id!r}")
        if self.generation is not None:
            bits.append(f"generation {self.generation}")
        if self.origin is not None:
            bits.append(f"origin {self.origin!r}")
        lines = [head + (f" ({', '.join(bits)})" if bits else "")]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# PNG + C2PA
# --------------------------------------------------------------------------------------------


def _png_problem(data: bytes) -> Optional[str]:
    """Strict PNG structure check: signature, every chunk's CRC, IEND last, nothing after it.

    c2pa hashes the pixel data and the manifest's claim, but its parser tolerates some changes to
    the manifest box framing; a PNG chunk CRC catches every single-byte change, so we check it.
    """
    if not data.startswith(PNG_SIGNATURE):
        return "not a PNG file (bad signature)"
    i = len(PNG_SIGNATURE)
    seen_iend = False
    while i < len(data):
        if seen_iend:
            return f"data after the IEND chunk at byte {i}"
        if i + 12 > len(data):
            return f"truncated chunk at byte {i}"
        (length,) = struct.unpack(">I", data[i:i + 4])
        ctype = data[i + 4:i + 8]
        end = i + 12 + length
        if end > len(data):
            return f"chunk at byte {i} runs past the end of the file"
        (crc,) = struct.unpack(">I", data[end - 4:end])
        if zlib.crc32(ctype + data[i + 8:end - 4]) & 0xFFFFFFFF != crc:
            return f"chunk {ctype!r} at byte {i}: CRC mismatch (the file was changed)"
        seen_iend = ctype == b"IEND"
        i = end
    if not seen_iend:
        return "no IEND chunk (truncated file)"
    return None


def _c2pa():
    try:
        import c2pa  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the install
        raise UserError("C2PA support needs the `c2pa-python` package: pip install 'c2pa-python>=0.38,<0.39'.") from None
    return c2pa


def _context(c2pa, *, trust_pem: Optional[bytes] = None):
    settings: dict = {
        "verify": {"remote_manifest_fetch": False},
        "builder": {"thumbnail": {"enabled": False}},
    }
    if trust_pem is not None:
        settings["verify"]["verify_trust"] = True
        settings["trust"] = {"trust_anchors": trust_pem.decode("ascii")}
    return c2pa.Context(settings=c2pa.Settings.from_dict(settings))


def _png_manifest(model_id: str, generation: int, title: str) -> dict:
    from collapselab import __version__

    return {
        "claim_generator_info": [{"name": "collapselab", "version": str(__version__)}],
        "title": title,
        "format": "image/png",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": DIGITAL_SOURCE_TYPE,
                                      "softwareAgent": {"name": "collapselab", "version": str(__version__)}}]},
            },
            {"label": GENERATION_LABEL, "data": {"model_id": model_id, "generation": generation}},
        ],
    }


def sign_png(
    png: Union[bytes, str, os.PathLike],
    out_path: Union[str, os.PathLike],
    *,
    model_id: str,
    generation: int,
    credentials_dir: Union[str, os.PathLike],
) -> Path:
    """Write ``out_path``: the PNG with an embedded, signed C2PA manifest. Atomic (temp + rename)."""
    if isinstance(png, (bytes, bytearray, memoryview)):
        data = bytes(png)
        where = "the image bytes"
    else:
        p = Path(png)
        if not p.is_file():
            raise UserError(f"{p}: no such file.")
        data = p.read_bytes()
        where = str(p)
    problem = _png_problem(data)
    if problem:
        raise UserError(f"{where}: cannot sign: {problem}. Only PNG images can be signed.")
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise UserError(f"generation {generation!r}: must be a whole number >= 0.")
    if not model_id or not isinstance(model_id, str):
        raise UserError("model_id: give the model's id as a non-empty string.")
    out = Path(out_path)
    if out.suffix.lower() != ".png":
        raise UserError(f"{out}: the signed image is a PNG; give an output path ending in .png.")
    check_output_file(out, "signed image")  # a folder, a path under a file: said before signing
    signing = _load_signing(credentials_dir)
    c2pa = _c2pa()

    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=signing.chain_pem, private_key=signing.key_pem, ta_url=None)
    try:
        signer = c2pa.Signer.from_info(info)
        with _context(c2pa) as ctx, signer:
            builder = c2pa.Builder(_png_manifest(model_id, generation, out.name), ctx)
            dst = io.BytesIO()
            with builder:
                builder.sign(signer, "image/png", io.BytesIO(data), dst)
    except c2pa.C2paError as e:
        # c2pa's messages name the problem (e.g. "the certificate is invalid"), never key bytes.
        raise UserError(f"{out}: c2pa refused to sign: {e}. Check the credentials folder {credentials_dir}.") from None
    signed = dst.getvalue()
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(signed))
    return out


def _subject_cn(cert) -> Optional[str]:
    from cryptography.x509.oid import NameOID

    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def verify_png(path: Union[str, os.PathLike], *, trust: Optional[Union[str, os.PathLike]] = None) -> VerifyResult:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file.")
    anchor_pem = _load_anchor(trust)[1] if trust is not None else None
    data = path.read_bytes()
    res = VerifyResult(path=path, kind="image", valid=False, trusted=None if trust is None else False)
    problem = _png_problem(data)
    if problem:
        res.problems.append(problem)
        return res
    c2pa = _c2pa()
    try:
        with _context(c2pa, trust_pem=anchor_pem) as ctx:
            with c2pa.Reader("image/png", io.BytesIO(data), context=ctx) as reader:
                state = reader.get_validation_state()
                results = reader.get_validation_results() or {}
                manifest = reader.get_active_manifest() or {}
    except Exception as e:  # fail closed: whatever the reader cannot make sense of is invalid
        msg = str(e) or type(e).__name__
        res.problems.append("no C2PA manifest in the file" if "ManifestNotFound" in msg else f"C2PA manifest unreadable: {msg}")
        return res
    failures = [f.get("code", "?") for f in (results.get("activeManifest") or {}).get("failure", [])]
    failures += [f.get("code", "?") for ing in (results.get("ingredientDeltas") or []) for f in (ing.get("validationDeltas") or {}).get("failure", [])]
    res.valid = state in ("Valid", "Trusted")
    if trust is not None:
        res.trusted = state == "Trusted"
    for code in failures:
        if code == "signingCredential.untrusted" and trust is None:
            continue  # no anchor asked for: "valid" says nothing about trust
        res.problems.append(f"C2PA: {code}")
    if not res.valid and not res.problems:
        res.problems.append(f"C2PA validation state {state!r}")
    for a in manifest.get("assertions", []) or []:
        if a.get("label") == GENERATION_LABEL:
            d = a.get("data") or {}
            res.model_id, res.generation = d.get("model_id"), d.get("generation")
    sig = manifest.get("signature_info") or {}
    res.signer = sig.get("common_name") or sig.get("issuer")
    return res


# --------------------------------------------------------------------------------------------
# Text shards: signed sidecar manifests
# --------------------------------------------------------------------------------------------


def _document_hashes(path: Path, data: bytes) -> list[dict]:
    if path.suffix.lower() == ".jsonl":
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return [{"line": i + 1, "sha256": core.content_hash(line)} for i, line in enumerate(lines)]
    return [{"file": path.name, "sha256": core.content_hash(data)}]


def _legacy_signed_bytes(obj: Any) -> bytes:
    """What sidecars written before the provenance core signed: canonical JSON with ``\\u`` escapes.
    It differs from :func:`core.canonical_json` only where the payload holds non-ASCII text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _file_text(obj: Any) -> str:
    """The one accepted spelling of a sidecar: any byte changed elsewhere is a tampered file."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def sidecar_path(shard: Union[str, os.PathLike]) -> Path:
    shard = Path(shard)
    return shard.with_name(shard.name + SIDECAR_SUFFIX)


def _check_text_shard(path: Path) -> None:
    if path.suffix.lower() not in TEXT_SUFFIXES:
        raise UserError(f"{path}: unsupported format {path.suffix or '(no suffix)'!r}. Text shards are .jsonl, .txt or .parquet; images are .png.")
    if not path.is_file():
        raise UserError(f"{path}: no such file.")


def check_origin(origin: str) -> str:
    """``origin`` if it is one of the ledger's origins (one vocabulary for both), else a UserError listing them."""
    from collapselab.provenance.ledger import ORIGINS

    if origin not in ORIGINS:
        raise UserError(f"--origin {origin!r}: must be one of {', '.join(ORIGINS)} (the ledger's origins).")
    return origin


def sign_text_shard(
    path: Union[str, os.PathLike],
    *,
    origin: str,
    model_id: Optional[str],
    generation: Optional[int],
    credentials_dir: Union[str, os.PathLike],
) -> Path:
    """Write ``PATH.manifest.json``: the shard's hashes and origin, signed with the leaf key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = Path(path)
    _check_text_shard(path)
    if generation is not None and (not isinstance(generation, int) or isinstance(generation, bool) or generation < 0):
        raise UserError(f"generation {generation!r}: must be a whole number >= 0.")
    check_origin(origin)
    signing = _load_signing(credentials_dir)
    data = path.read_bytes()
    from cryptography import x509

    chain = [c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in x509.load_pem_x509_certificates(signing.chain_pem)]
    payload = {
        "shard": path.name,
        "format": path.suffix.lower().lstrip("."),
        "size": len(data),
        "sha256": core.content_hash(data),
        "documents": _document_hashes(path, data),
        "origin": origin,
        "model_id": model_id,
        "generation": generation,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "certificate_chain": chain,
    }
    sig = signing.key.sign(core.canonical_json({"format": SIDECAR_FORMAT, "payload": payload}), ec.ECDSA(hashes.SHA256()))
    doc = {"format": SIDECAR_FORMAT, "payload": payload, "signature": {"alg": "ES256", "value": sig.hex()}}
    out = sidecar_path(path)
    atomic_write_text(out, _file_text(doc))
    return out


def _chain_problems(certs: list, now: _dt.datetime) -> list[str]:
    """Each certificate issued by the next, within its validity; the leaf may sign, the rest are CAs."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    problems = []
    for i, c in enumerate(certs):
        if not (c.not_valid_before_utc <= now <= c.not_valid_after_utc):
            problems.append(f"certificate {_subject_cn(c)!r} is outside its validity period")
        try:
            bc = c.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if i == 0:
            try:
                ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
                if not ku.digital_signature:
                    problems.append("signing certificate lacks the digitalSignature key usage")
            except x509.ExtensionNotFound:
                problems.append("signing certificate has no key usage extension")
            if bc is not None and bc.ca:
                problems.append("signing certificate is a CA certificate")
        elif bc is None or not bc.ca:
            problems.append(f"certificate {_subject_cn(c)!r} in the chain is not a CA")
        if i + 1 < len(certs):
            try:
                c.verify_directly_issued_by(certs[i + 1])
            except (ValueError, TypeError, InvalidSignature):
                problems.append(f"certificate {_subject_cn(c)!r} was not issued by {_subject_cn(certs[i + 1])!r}")
    return problems


def _anchored(certs: list, anchors: list, now: _dt.datetime) -> bool:
    """True when the chain's last certificate is an anchor or was issued by one."""
    from cryptography.exceptions import InvalidSignature

    last = certs[-1]
    for a in anchors:
        if not (a.not_valid_before_utc <= now <= a.not_valid_after_utc):
            continue
        if a == last:
            return True
        try:
            last.verify_directly_issued_by(a)
            return True
        except (ValueError, TypeError, InvalidSignature):
            continue
    return False


def verify_text_shard(path: Union[str, os.PathLike], *, trust: Optional[Union[str, os.PathLike]] = None) -> VerifyResult:
    """Check ``PATH.manifest.json`` against the shard ``PATH``."""
    path = Path(path)
    _check_text_shard(path)
    anchors = _load_anchor(trust)[0] if trust is not None else None
    res = VerifyResult(path=path, kind="text", valid=False, trusted=None if trust is None else False)
    try:
        return _verify_sidecar(path, anchors, res)
    except Exception as e:  # fail closed: a manifest we cannot fully check is invalid
        res.valid = False
        res.trusted = None if trust is None else False
        res.problems.append(f"{sidecar_path(path).name}: malformed manifest ({type(e).__name__})")
        return res


def _verify_sidecar(path: Path, anchors: Optional[list], res: VerifyResult) -> VerifyResult:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    side = sidecar_path(path)
    if not side.is_file():
        res.problems.append(f"no signed manifest: {side.name} is missing")
        return res
    raw = side.read_bytes()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        res.problems.append(f"{side.name}: not valid JSON (the manifest was changed)")
        return res
    if not isinstance(doc, dict) or set(doc) != {"format", "payload", "signature"} or doc.get("format") != SIDECAR_FORMAT:
        res.problems.append(f"{side.name}: not a {SIDECAR_FORMAT} manifest")
        return res
    if raw.decode("utf-8") != _file_text(doc):
        res.problems.append(f"{side.name}: the manifest file was edited after signing")
        return res
    payload, sig = doc["payload"], doc["signature"]
    try:
        certs = x509.load_pem_x509_certificates("".join(payload["certificate_chain"]).encode("ascii"))
        signature = bytes.fromhex(sig["value"])
        if sig.get("alg") != "ES256" or set(sig) != {"alg", "value"}:
            raise ValueError("alg")
        key = certs[0].public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("key")
    except (KeyError, TypeError, ValueError, AttributeError, UnicodeEncodeError):
        res.problems.append(f"{side.name}: malformed signature or certificate chain")
        return res
    res.signer = _subject_cn(certs[0])
    res.origin, res.model_id, res.generation = payload.get("origin"), payload.get("model_id"), payload.get("generation")
    signed = {"format": doc["format"], "payload": payload}
    for encoding in (core.canonical_json, _legacy_signed_bytes):
        try:
            key.verify(signature, encoding(signed), ec.ECDSA(hashes.SHA256()))
            break
        except InvalidSignature:
            continue
    else:
        res.problems.append(f"{side.name}: signature does not match (the manifest was changed)")
        return res
    now = _dt.datetime.now(_dt.timezone.utc)
    chain_problems = _chain_problems(certs, now)
    res.problems += chain_problems

    data = path.read_bytes()
    if payload.get("shard") != path.name:
        res.problems.append(f"manifest was made for {payload.get('shard')!r}, not {path.name!r}")
    if payload.get("size") != len(data) or payload.get("sha256") != core.content_hash(data):
        res.problems.append("shard SHA-256 does not match the manifest (the shard was changed)")
    want = payload.get("documents") or []
    have = _document_hashes(path, data)
    if want != have:
        changed = [w.get("line", w.get("file")) for w, h in zip(want, have) if w != h]
        if changed:
            res.problems.append(f"documents changed: {', '.join(map(str, changed[:10]))}{' …' if len(changed) > 10 else ''}")
        if len(want) != len(have):
            res.problems.append(f"manifest lists {len(want)} documents, the shard has {len(have)}")
    res.valid = not res.problems
    if anchors is not None:
        res.trusted = res.valid and _anchored(certs, anchors, now)
        if res.valid and not res.trusted:
            res.problems.append("signing chain does not end at the given trust anchor")
    return res


# --------------------------------------------------------------------------------------------
# One entry point
# --------------------------------------------------------------------------------------------


def verify(path: Union[str, os.PathLike], *, trust: Optional[Union[str, os.PathLike]] = None) -> VerifyResult:
    """Verify a signed PNG, a text shard (via its sidecar) or a sidecar ``*.manifest.json``."""
    p = Path(path)
    if p.name.endswith(SIDECAR_SUFFIX):
        p = p.with_name(p.name[: -len(SIDECAR_SUFFIX)])
    suffix = p.suffix.lower()
    if suffix == ".png":
        return verify_png(p, trust=trust)
    if suffix in TEXT_SUFFIXES:
        return verify_text_shard(p, trust=trust)
    if not p.exists():
        raise UserError(f"{p}: no such file.")
    raise UserError(f"{p}: unsupported format {suffix or '(no suffix)'!r}. Content credentials cover .png images and .jsonl/.txt text shards.")
