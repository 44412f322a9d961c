"""Content credentials: the local certificate chain, C2PA-signed PNGs, signed text-shard sidecars."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import stat
import struct
import sys
import zlib
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import typer

from collapselab.errors import UserError

c2pa = pytest.importorskip("c2pa")

from collapselab.provenance import credentials as cred  # noqa: E402
from collapselab.provenance.credentials_cli import credentials_app  # noqa: E402


# ------------------------------------------------------------------ helpers
def make_png(w: int = 16, h: int = 12, seed: int = 0) -> bytes:
    """A small RGB PNG from numpy pixels, written with zlib (no Pillow needed)."""
    px = np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + px[y].tobytes() for y in range(h))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return cred.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of the length field, data length) for each PNG chunk."""
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        out.append((data[i + 4:i + 8], i, n))
        i += 12 + n
    return out


def flip(data: bytes, pos: int, *, fix_crc: bool = False) -> bytes:
    """Flip one bit at ``pos``; with ``fix_crc`` recompute that chunk's CRC as a careful forger would."""
    b = bytearray(data)
    b[pos] ^= 0x01
    if fix_crc:
        for _t, off, n in chunks(data):
            if off + 8 <= pos < off + 8 + n:
                b[off + 8 + n:off + 12 + n] = struct.pack(">I", zlib.crc32(bytes(b[off + 4:off + 8 + n])) & 0xFFFFFFFF)
    return bytes(b)


def run_cli(args: list[str]) -> tuple[int, str]:
    """The credentials sub-app with ``collapselab.cli.main``'s rules: UserError → exit 2."""
    buf = io.StringIO()
    try:
        with redirect_stdout(buf):
            rc = credentials_app(args, standalone_mode=False, prog_name="credentials")
    except UserError as e:
        return 2, f"error: {e}"
    except typer.Exit as e:
        return e.exit_code, buf.getvalue()
    return rc or 0, buf.getvalue()


@pytest.fixture(scope="module")
def creds(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("creds") / "ca"
    cred.init_credentials(d)
    return d


@pytest.fixture(scope="module")
def other_creds(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("other") / "ca"
    cred.init_credentials(d)
    return d


@pytest.fixture(scope="module")
def signed_png(creds, tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("img") / "gen3.png"
    cred.sign_png(make_png(), out, model_id="ngram-a", generation=3, credentials_dir=creds)
    return out.read_bytes()


# ------------------------------------------------------------------ the chain
def test_init_makes_chain_with_private_keys(tmp_path):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    d = tmp_path / "ca"
    rc, out = run_cli(["init", str(d)])
    assert rc == 0
    for name in (cred.ROOT_KEY, cred.LEAF_KEY):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600
        key_text = (d / name).read_text()
        body = "".join(l for l in key_text.splitlines() if not l.startswith("-----"))
        assert body[:40] not in out and "PRIVATE KEY" not in out
    root = x509.load_pem_x509_certificate((d / cred.ROOT_CERT).read_bytes())
    leaf = x509.load_pem_x509_certificate((d / cred.LEAF_CERT).read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    leaf.verify_directly_issued_by(root)
    # refuses to overwrite existing keys
    before = (d / cred.LEAF_KEY).read_bytes()
    rc, out = run_cli(["init", str(d)])
    assert rc == 2 and "refusing to overwrite" in out
    assert (d / cred.LEAF_KEY).read_bytes() == before


def test_lone_self_signed_certificate_is_rejected_by_c2pa(tmp_path):
    """Why init builds a chain: c2pa-python will not sign with a single self-signed certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lone")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path / "lone"
    d.mkdir()
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (d / cred.CHAIN).write_bytes(pem)
    fd = os.open(d / cred.LEAF_KEY, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(UserError, match="certificate is invalid"):
        cred.sign_png(make_png(), tmp_path / "x.png", model_id="m", generation=0, credentials_dir=d)
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------ images
def test_signed_png_is_valid_and_trusted(signed_png, creds, tmp_path):
    p = tmp_path / "img.png"
    p.write_bytes(signed_png)
    r = cred.verify(p)
    assert r.valid and r.trusted is None and r.status == "valid" and r.ok
    r = cred.verify(p, trust=creds)
    assert r.status == "trusted" and r.ok, str(r)
    assert (r.model_id, r.generation) == ("ngram-a", 3)
    assert run_cli(["verify", str(p), "--trust", str(creds)])[0] == 0
    # the manifest says what the issue asks for
    ctx = c2pa.Context(settings=c2pa.Settings.from_dict({"verify": {"remote_manifest_fetch": False}}))
    m = c2pa.Reader("image/png", io.BytesIO(signed_png), context=ctx).get_active_manifest()
    by_label = {a["label"]: a["data"] for a in m["assertions"]}
    actions = next(v["actions"] for k, v in by_label.items() if k.startswith("c2pa.actions"))
    assert any(a["action"] == "c2pa.created" and a["digitalSourceType"] == cred.DIGITAL_SOURCE_TYPE for a in actions)
    assert by_label[cred.GENERATION_LABEL] == {"model_id": "ngram-a", "generation": 3}


def test_other_root_is_not_trusted(signed_png, other_creds, tmp_path):
    p = tmp_path / "img.png"
    p.write_bytes(signed_png)
    r = cred.verify(p, trust=other_creds)
    assert r.valid and r.trusted is False and not r.ok
    rc, out = run_cli(["verify", str(p), "--trust", str(other_creds)])
    assert rc == 1 and "not trusted" in out


def test_every_single_byte_flip_of_a_signed_png_is_detected(signed_png, creds, tmp_path):
    p = tmp_path / "img.png"
    for pos in range(len(signed_png)):
        p.write_bytes(flip(signed_png, pos))
        r = cred.verify(p, trust=creds)
        assert not r.ok and not r.valid, f"byte {pos} flipped, still {r.status}"


@pytest.mark.parametrize("where", ["IDAT", "IHDR", "model id", "generation", "source type", "action"])
def test_c2pa_itself_catches_changed_pixels_and_manifest(signed_png, creds, tmp_path, where):
    """With the chunk CRC recomputed (a forger would), c2pa's own hashes must still catch it:
    every byte of the pixel data and header, and the signed assertions inside the manifest."""
    if where in ("IDAT", "IHDR"):
        (_t, off, n), = [c for c in chunks(signed_png) if c[0] == where.encode()]
        positions = range(off + 8, off + 8 + n)
    else:
        needle = {"model id": b"ngram-a", "generation": b"generation", "source type": b"trainedAlgorithmicMedia",
                  "action": b"c2pa.created"}[where]
        at = signed_png.index(needle)
        positions = range(at, at + len(needle))
    p = tmp_path / "img.png"
    for pos in positions:
        p.write_bytes(flip(signed_png, pos, fix_crc=True))
        r = cred.verify(p, trust=creds)
        assert not r.valid and r.problems and not any("CRC" in x for x in r.problems), f"{where} byte {pos}: {r}"


def test_stripped_manifest_is_invalid(signed_png, tmp_path):
    stripped = cred.PNG_SIGNATURE + b"".join(
        signed_png[off:off + 12 + n] for t, off, n in chunks(signed_png) if t != b"caBX")
    p = tmp_path / "img.png"
    p.write_bytes(stripped)
    r = cred.verify(p)
    assert not r.valid and "no C2PA manifest" in str(r)
    assert run_cli(["verify", str(p)])[0] == 1
    unsigned = tmp_path / "plain.png"
    unsigned.write_bytes(make_png())
    assert run_cli(["verify", str(unsigned)])[0] == 1


def test_sign_png_writes_atomically_and_refuses_bad_input(creds, tmp_path):
    out = tmp_path / "out.png"
    src = tmp_path / "in.png"
    src.write_bytes(make_png(seed=1))
    assert cred.sign_png(src, out, model_id="m", generation=0, credentials_dir=creds) == out
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".")] == []
    with pytest.raises(UserError, match="Only PNG"):
        cred.sign_png(b"GIF89a" + bytes(20), tmp_path / "g.png", model_id="m", generation=0, credentials_dir=creds)
    with pytest.raises(UserError, match="no such credentials folder"):
        cred.sign_png(src, tmp_path / "y.png", model_id="m", generation=0, credentials_dir=tmp_path / "nope")
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "y.png").exists()


def test_wrong_key_is_bad_input(creds, other_creds, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(creds, mixed)
    os.replace(mixed / cred.LEAF_KEY, mixed / "old.key")
    shutil.copy2(other_creds / cred.LEAF_KEY, mixed / cred.LEAF_KEY)
    shard = tmp_path / "s.txt"
    shard.write_text("hello\n")
    rc, out = run_cli(["sign", str(shard), "-c", str(mixed), "--model", "m", "--generation", "1"])
    assert rc == 2 and "wrong key" in out
    key_body = (mixed / cred.LEAF_KEY).read_text().splitlines()[1]
    assert key_body not in out
    assert not cred.sidecar_path(shard).exists()


# ------------------------------------------------------------------ text shards
def _jsonl(path: Path, n: int = 5) -> Path:
    path.write_text("".join(json.dumps({"text": f"document number {i}."}) + "\n" for i in range(n)))
    return path


def test_text_shard_sign_and_verify(creds, other_creds, tmp_path):
    shard = _jsonl(tmp_path / "gen2.jsonl")
    rc, out = run_cli(["sign", str(shard), "-c", str(creds), "--model", "ngram-a", "--generation", "2"])
    assert rc == 0
    side = cred.sidecar_path(shard)
    doc = json.loads(side.read_text())
    assert len(doc["payload"]["documents"]) == 5 and doc["payload"]["origin"] == "synthetic"
    assert "PRIVATE" not in side.read_text()
    r = cred.verify(shard, trust=creds)
    assert r.status == "trusted" and (r.model_id, r.generation) == ("ngram-a", 2), str(r)
    assert run_cli(["verify", str(side), "--trust", str(creds)])[0] == 0  # the sidecar's path works too
    r = cred.verify(shard, trust=other_creds)
    assert r.valid and r.trusted is False and not r.ok

    txt = tmp_path / "human.txt"
    txt.write_text("Some human text.\nTwo lines.\n")
    cred.sign_text_shard(txt, origin="human", model_id=None, generation=None, credentials_dir=creds)
    assert cred.verify(txt, trust=creds).ok


def test_changed_line_of_a_shard_is_invalid(creds, tmp_path):
    shard = _jsonl(tmp_path / "s.jsonl")
    cred.sign_text_shard(shard, origin="synthetic", model_id="m", generation=1, credentials_dir=creds)
    lines = shard.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace("3", "9")
    shard.write_text("".join(lines))
    r = cred.verify(shard, trust=creds)
    assert not r.valid and "documents changed: 4" in str(r)
    rc, out = run_cli(["verify", str(shard)])
    assert rc == 1 and "invalid" in out


# a flipped byte in a certificate's serial can make it non-positive: cryptography warns while parsing
# it (and will raise ValueError in a later release, which verify already reports as malformed)
@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_every_single_byte_flip_of_a_sidecar_is_detected(creds, tmp_path):
    shard = _jsonl(tmp_path / "s.jsonl", n=3)
    side = cred.sign_text_shard(shard, origin="synthetic", model_id="m", generation=1, credentials_dir=creds)
    good = side.read_bytes()
    assert cred.verify(shard, trust=creds).ok
    for pos in range(len(good)):
        b = bytearray(good)
        b[pos] ^= 0x01
        side.write_bytes(bytes(b))
        r = cred.verify(shard, trust=creds)
        assert not r.ok and not r.valid, f"sidecar byte {pos} flipped, still {r.status}"
    side.unlink()
    r = cred.verify(shard)
    assert not r.valid and "missing" in str(r)


def test_forged_sidecar_with_own_key_is_not_trusted(creds, other_creds, tmp_path):
    """Re-signing changed text with another chain gives a valid signature but no trust."""
    shard = _jsonl(tmp_path / "s.jsonl")
    cred.sign_text_shard(shard, origin="human", model_id=None, generation=None, credentials_dir=other_creds)
    r = cred.verify(shard, trust=creds)
    assert r.valid and not r.ok and "trust anchor" in str(r)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("name, content", [("notes.gif", b"GIF89a"), ("x.bmp", b"BM"), ("data.csv", b"a,b\n")])
def test_unsupported_format_is_exit_2(tmp_path, creds, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(UserError, match="unsupported format"):
        cred.verify(p)
    rc, out = run_cli(["verify", str(p)])
    assert rc == 2 and out.startswith("error:") and "\n" not in out.strip()
    rc, out = run_cli(["sign", str(p), "-c", str(creds), "--model", "m", "--generation", "0"])
    assert rc == 2 and "unsupported format" in out


def test_missing_inputs_are_exit_2(tmp_path, creds):
    assert run_cli(["verify", str(tmp_path / "missing.png")])[0] == 2
    assert run_cli(["verify", str(tmp_path / "missing.jsonl")])[0] == 2
    shard = _jsonl(tmp_path / "s.jsonl")
    rc, out = run_cli(["sign", str(shard), "-c", str(tmp_path / "nocreds"), "--model", "m", "--generation", "0"])
    assert rc == 2 and "credentials" in out
    rc, out = run_cli(["verify", str(shard), "--trust", str(tmp_path / "noanchor")])
    assert rc == 2 and "trust anchor" in out
    assert not cred.sidecar_path(shard).exists()


def test_main_cli_wires_credentials_when_registered(tmp_path, creds, signed_png):
    """Once ``cli.py`` adds the sub-app, the real entry point gives the same exit codes."""
    from collapselab import cli

    if not any(g.name == "credentials" for g in cli.app.registered_groups):
        pytest.skip("credentials not registered in collapselab.cli yet")
    p = tmp_path / "img.png"
    p.write_bytes(signed_png)
    for args, want in ((["credentials", "verify", str(p), "--trust", str(creds)], 0),
                       (["credentials", "verify", str(tmp_path / "x.gif")], 2)):
        old = sys.argv
        sys.argv = ["collapselab", *args]
        try:
            cli.main()  # returns normally on success
            code = 0
        except SystemExit as e:
            code = e.code or 0
        finally:
            sys.argv = old
        assert code == want
