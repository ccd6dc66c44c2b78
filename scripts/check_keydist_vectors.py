#!/usr/bin/env python3
"""Independent check of the key-distribution golden vectors (docs/key-distribution.md).

Re-verifies group-core/tests/vectors/keydist_*.json with Python's `cryptography` package and a
hand-written postcard decoder, sharing no code with the Rust implementation:

  * the envelope: version 0x02 (format 2: join challenges), mode byte, body, trailer;
  * every field of the body, decoded by hand (LEB128 varints, options, sequences, enums) and
    compared with the vector's "fields", with no byte left over; the encoding must be the
    canonical one (minimal varints), as the Rust decoder requires;
  * signed mode: the ECDSA P-256 / SHA-256 signature over
        "dtls-group kd v1" || direction || peer public key (compressed) || version || mode || body
    with the published public keys, and that s is low (s <= n/2);
  * the sealed secret of each bundle: ECDH(device private key, ephemeral key), HKDF-SHA256,
    AES-128-CCM (16-byte tag) with the bundle-bound associated data, then the key material;
  * PSK mode: the AES-128-CCM tag over version || mode || body under the HKDF-derived key and
    nonce (00^5 || counter for bundles and notices, 01 || challenge[0..12] for a join
    challenge, the message nonce's first 13 bytes for device messages), and the PSK-sealed
    secret;
  * the record keys derived from the material (native HKDF schedule, wolfSSL TLS 1.2 PRF);
  * self-test: a flipped byte in every vector must make the check fail.

Usage: python3 scripts/check_keydist_vectors.py [vector files...]   (pip install cryptography)
Exits non-zero on any mismatch.
"""

import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILES = [
    ROOT / "group-core/tests/vectors/keydist_signed.json",
    ROOT / "group-core/tests/vectors/keydist_psk.json",
]

SIGN_LABEL = b"dtls-group kd v1"
SEAL_SALT = b"dtls-group kd v1 seal"
PSK_SALT = b"dtls-group kd v1 psk"
NATIVE_SALT = b"dtls-group v1"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
DEVICE_TO_SERVER, SERVER_TO_DEVICE = 1, 2
VERSION = 2
KIND_DIRECTION = {0: DEVICE_TO_SERVER, 1: SERVER_TO_DEVICE, 2: DEVICE_TO_SERVER,
                  3: DEVICE_TO_SERVER, 4: DEVICE_TO_SERVER, 5: SERVER_TO_DEVICE,
                  6: SERVER_TO_DEVICE}
KIND_NAMES = {0: "join_request", 1: "key_bundle", 2: "ack", 3: "leave", 4: "rekey_needed",
              5: "removed", 6: "join_challenge"}
# Suites: (key length, iv length) of the record keys.
SUITES = {0xC0A8: (16, 4), 0xC0A4: (16, 4), 0x00A8: (16, 4), 0xCCAB: (32, 12)}


class Bad(Exception):
    pass


# ---- postcard, by hand ------------------------------------------------------------------------

class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def u8(self):
        if self.pos >= len(self.data):
            raise Bad("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self, bits):
        """LEB128, least significant group first; postcard caps the length per type."""
        value, shift, max_bytes = 0, 0, (bits + 6) // 7
        for i in range(max_bytes):
            b = self.u8()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if value >> bits:
                    raise Bad("varint overflows u%d" % bits)
                if i > 0 and b == 0:
                    raise Bad("non-minimal varint")
                return value
            shift += 7
        raise Bad("varint too long")

    def boolean(self):
        b = self.u8()
        if b not in (0, 1):
            raise Bad("bad bool %d" % b)
        return b == 1

    def fixed(self, n):
        if self.pos + n > len(self.data):
            raise Bad("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def option(self, inner):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return inner()
        raise Bad("bad option tag %d" % tag)

    def seq(self, inner, cap):
        n = self.varint(32)
        if n > cap:
            raise Bad("sequence of %d over capacity %d" % (n, cap))
        return [inner() for _ in range(n)]

    def byte_seq(self, cap):
        return bytes(self.seq(self.u8, cap))

    def enum(self, count):
        v = self.varint(32)
        if v >= count:
            raise Bad("enum tag %d out of range" % v)
        return v


def device_header(r):
    return {"group_id": r.varint(32), "device_id": r.varint(32), "nonce": r.fixed(16).hex(),
            "counter": r.varint(64)}


def server_header(r):
    return {"group_id": r.varint(32), "device_id": r.varint(32), "counter": r.varint(64)}


def decode_body(kind, r):
    if kind == 0:  # JoinRequest
        return {"header": device_header(r), "role": r.enum(2), "public_key": r.byte_seq(65).hex(),
                "sequence_state_lost": r.boolean(),
                "challenge": r.option(lambda: r.fixed(16).hex())}
    if kind == 1:  # KeyBundle
        out = {"header": server_header(r),
               "echo": r.option(lambda: r.fixed(16).hex()),
               "epoch": r.varint(16), "suite": r.varint(16),
               "sender_id": r.option(r.u8),
               "policy": {"replay_window": r.varint(16), "admission": r.enum(2),
                          "nonce_profile": r.enum(2), "signatures_required": r.boolean(),
                          "grace_ms": r.varint(32), "max_fragment_len": r.varint(16)},
               "activate_in_ms": r.varint(32), "lifetime_ms": r.varint(32)}
        out["senders"] = r.seq(lambda: {"sender_id": r.u8(),
                                        "public_key": r.option(lambda: r.fixed(33).hex())}, 16)
        out["stale"] = list(r.seq(r.u8, 16))
        out["sealed"] = {"ephemeral": r.option(lambda: r.fixed(33).hex()),
                         "ciphertext": r.byte_seq(160).hex()}
        return out
    if kind == 2:  # Ack
        return {"header": device_header(r), "epoch": r.varint(16)}
    if kind == 3:  # Leave
        return {"header": device_header(r)}
    if kind == 4:  # RekeyNeeded
        return {"header": device_header(r), "epoch": r.varint(16), "reason": r.enum(6)}
    if kind == 5:  # Removed
        return {"header": server_header(r), "reason": r.enum(2)}
    if kind == 6:  # JoinChallenge
        return {"group_id": r.varint(32), "device_id": r.varint(32), "echo": r.fixed(16).hex(),
                "challenge": r.fixed(16).hex()}
    raise Bad("unknown kind %d" % kind)


def decode_material(data):
    r = Reader(data)
    variant = r.enum(2)
    if variant == 0:
        m = {"variant": 0, "secret": r.fixed(32).hex()}
    else:
        m = {"variant": 1, "pms": r.fixed(64).hex(), "client_random": r.fixed(32).hex(),
             "server_random": r.fixed(32).hex()}
    if r.pos != len(data):
        raise Bad("bytes left after the key material")
    return m


# ---- crypto, with `cryptography` --------------------------------------------------------------

def load_public(hex_point):
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(hex_point))


def load_private(hex_scalar):
    return ec.derive_private_key(int(hex_scalar, 16), ec.SECP256R1())


def compressed(pub):
    return pub.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def hkdf(salt, ikm, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def verify_signature(pub, peer_pub, direction, protected, trailer):
    if len(trailer) != 64:
        raise Bad("signature length %d" % len(trailer))
    r, s = int.from_bytes(trailer[:32], "big"), int.from_bytes(trailer[32:], "big")
    if not (0 < r < P256_N and 0 < s <= P256_N // 2):
        raise Bad("signature scalar out of range or high S")
    data = SIGN_LABEL + bytes([direction]) + compressed(peer_pub) + protected
    try:
        pub.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Bad("signature does not verify") from None


def secret_aad(h, epoch, suite):
    return struct.pack(">IIQHH", h["group_id"], h["device_id"], h["counter"], epoch, suite)


def ccm_open(key_nonce, aad, ciphertext):
    try:
        return AESCCM(key_nonce[:16], tag_length=16).decrypt(key_nonce[16:29], ciphertext, aad)
    except InvalidTag:
        raise Bad("sealed secret does not authenticate") from None


def tls12_prf(secret, label, seed, length):
    out, a = b"", label + seed
    a = hmac.new(secret, a, hashlib.sha256).digest()
    while len(out) < length:
        out += hmac.new(secret, a + label + seed, hashlib.sha256).digest()
        a = hmac.new(secret, a, hashlib.sha256).digest()
    return out[:length]


def record_keys(material, group_id, epoch, suite):
    key_len, iv_len = SUITES[suite]
    if material["variant"] == 0:
        secret = bytes.fromhex(material["secret"])
        ctx = struct.pack(">IHH", group_id, epoch, suite)
        return (hkdf(NATIVE_SALT, secret, b"dtls-group key" + ctx, key_len),
                hkdf(NATIVE_SALT, secret, b"dtls-group iv" + ctx, iv_len))
    pms = bytes.fromhex(material["pms"])
    cr, sr = bytes.fromhex(material["client_random"]), bytes.fromhex(material["server_random"])
    master = tls12_prf(pms, b"master secret", cr + sr, 48)
    block = tls12_prf(master, b"key expansion", sr + cr, key_len + iv_len)
    return block[:key_len], block[key_len:key_len + iv_len]


# ---- one vector ----------------------------------------------------------------------------------

def check_vector(doc, v, data):
    """Raises Bad on any mismatch; returns the decoded fields."""
    mode = v["mode"]
    if len(data) < 3:
        raise Bad("truncated")
    if data[0] != VERSION:
        raise Bad("version %d" % data[0])
    if data[1] != mode:
        raise Bad("mode byte %d, expected %d" % (data[1], mode))
    trailer_len = 64 if mode == 1 else 16
    protected, trailer = data[:-trailer_len], data[-trailer_len:]
    r = Reader(protected[2:])
    kind = r.varint(32)
    if kind != v["kind"]:
        raise Bad("kind %d, expected %d" % (kind, v["kind"]))
    fields = decode_body(kind, r)
    if r.pos != len(protected) - 2:
        raise Bad("%d bytes left after the body" % (len(protected) - 2 - r.pos))
    direction = KIND_DIRECTION[kind]
    if v["direction"] != ("server_to_device" if direction == SERVER_TO_DEVICE else "device_to_server"):
        raise Bad("direction")
    header = fields.get("header", fields)  # a join challenge has its ids at the top level
    if header["device_id"] != doc["device_id"]:
        raise Bad("device id")

    if mode == 1:
        server_pub, device_pub = load_public(doc["server_public_key"]), load_public(doc["device_public_key"])
        signer, peer = (server_pub, device_pub) if direction == SERVER_TO_DEVICE else (device_pub, server_pub)
        verify_signature(signer, peer, direction, protected, trailer)
    else:
        psk = bytes.fromhex(doc["psk"])
        mac_key = hkdf(PSK_SALT, psk, b"mac" + bytes([direction]) + struct.pack(">I", header["device_id"]), 16)
        if kind == 6:
            nonce = b"\x01" + bytes.fromhex(fields["challenge"])[:12]
        elif direction == SERVER_TO_DEVICE:
            nonce = bytes(5) + struct.pack(">Q", header["counter"])
        else:
            nonce = bytes.fromhex(header["nonce"])[:13]
        tag = AESCCM(mac_key, tag_length=16).encrypt(nonce, b"", protected)
        if not hmac.compare_digest(tag, trailer):
            raise Bad("PSK tag does not verify")

    if kind == 1:
        sealed = fields["sealed"]
        aad = secret_aad(header, fields["epoch"], fields["suite"])
        ct = bytes.fromhex(sealed["ciphertext"])
        if mode == 1:
            if sealed["ephemeral"] is None:
                raise Bad("signed-mode bundle without an ephemeral key")
            eph = bytes.fromhex(sealed["ephemeral"])
            device = load_private(doc["device_private_key"])
            z = device.exchange(ec.ECDH(), load_public(sealed["ephemeral"]))
            key_nonce = hkdf(SEAL_SALT, z, eph + compressed(device.public_key()), 29)
        else:
            if sealed["ephemeral"] is not None:
                raise Bad("PSK bundle with an ephemeral key")
            psk = bytes.fromhex(doc["psk"])
            key_nonce = hkdf(PSK_SALT, psk, b"seal" + struct.pack(">IQ", header["device_id"], header["counter"]), 29)
        material = decode_material(ccm_open(key_nonce, aad, ct))
        fields["material"] = material
        key, iv = record_keys(material, header["group_id"], fields["epoch"], fields["suite"])
        fields["record_keys"] = {"write_key": key.hex(), "write_iv": iv.hex()}
    return fields


def check_file(path):
    doc = json.loads(Path(path).read_text())
    failures = 0
    if "device_private_key" in doc:
        # The published public keys belong to the published private keys.
        for priv, pub in (("device_private_key", "device_public_key"),
                          ("server_private_key", "server_public_key")):
            if compressed(load_private(doc[priv]).public_key()).hex() != doc[pub]:
                print("FAIL %s: %s does not match %s" % (path, pub, priv))
                failures += 1
    kinds = set()
    for v in doc["vectors"]:
        data = bytes.fromhex(v["hex"])
        name = "%s:%s" % (Path(path).name, v["name"])
        try:
            if len(data) != v["length"]:
                raise Bad("length %d, vector says %d" % (len(data), v["length"]))
            fields = check_vector(doc, v, data)
            if fields != v["fields"]:
                for k in sorted(set(fields) | set(v["fields"])):
                    if fields.get(k) != v["fields"].get(k):
                        print("  field %s: decoded %r, vector %r" % (k, fields.get(k), v["fields"].get(k)))
                raise Bad("decoded fields differ from the vector's")
        except Bad as e:
            print("FAIL %s: %s" % (name, e))
            failures += 1
            continue
        kinds.add(v["kind"])
        # Self-test: a flipped byte anywhere must be caught (the checker is not vacuous).
        missed = []
        for i in range(len(data)):
            t = bytearray(data)
            t[i] ^= 0x01
            try:
                if check_vector(doc, v, bytes(t)) == v["fields"]:
                    missed.append(i)
            except (Bad, ValueError, KeyError, IndexError):
                pass
        if missed:
            print("FAIL %s: flipped byte(s) %s went unnoticed" % (name, missed))
            failures += 1
            continue
        print("ok   %s (%d bytes)" % (name, len(data)))
    missing = set(KIND_NAMES) - kinds
    if missing:
        print("FAIL %s: no valid vector for %s" % (path, sorted(KIND_NAMES[k] for k in missing)))
        failures += 1
    return failures


def main():
    files = sys.argv[1:] or [str(p) for p in DEFAULT_FILES]
    failures = 0
    for f in files:
        if not Path(f).exists():
            print("FAIL %s: missing" % f)
            failures += 1
            continue
        failures += check_file(f)
    if failures:
        print("%d failure(s)" % failures)
        return 1
    print("all key-distribution vectors verified independently")
    return 0


if __name__ == "__main__":
    sys.exit(main())
