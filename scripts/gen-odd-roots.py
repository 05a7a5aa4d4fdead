#!/usr/bin/env python3
"""Generates the Go-oracle corpus: testdata/go-oracle/roots/*.pem and testdata/go-oracle/index.tsv.

Each file is one root certificate that probes an edge of Go's crypto/x509.ParseCertificate —
what istiod runs on every trust anchor — or of the hook's own, stricter root checks: the nine
certificates issue 10 found written to the trust bundle, well-formed controls, and more odd
encodings from Go's parser. tests/go_oracle.rs runs Go itself over every file and compares Go's
verdict and the hook's with testdata/go-oracle/expected.tsv (reviewed by hand).

usage: python3 scripts/gen-odd-roots.py     (from anywhere; needs Python >= 3.8 and openssl)

Output is deterministic, so a regeneration is reviewable with `git diff`:
- keys come from testdata/go-oracle/keys/ (generated with openssl only when a file is missing;
  test material, not secret);
- the DER is built here byte by byte, every field fixed (serials are hashes of the names);
- RSA (PKCS #1 v1.5) and Ed25519 signatures are deterministic; ECDSA signatures are not, so an
  ECDSA-signed file keeps its committed signature while its to-be-signed bytes are unchanged.

Nothing verifies these signatures (neither Go's parser nor the hook checks a root's
self-signature); the controls are still genuinely self-signed.
"""
import base64
import hashlib
import os
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ORACLE = os.path.join(ROOT, "testdata", "go-oracle")
KEYS = os.path.join(ORACLE, "keys")
ROOTS = os.path.join(ORACLE, "roots")

# ---------------------------------------------------------------------------------------------
# DER encoding
# ---------------------------------------------------------------------------------------------


def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, body):
    return bytes([tag]) + der_len(len(body)) + body


def seq(*items):
    return tlv(0x30, b"".join(items))


def set_of(*items):
    return tlv(0x31, b"".join(items))


def int_body(n):
    """Minimal two's-complement content octets of an INTEGER."""
    length = max(1, (n.bit_length() + 8) // 8)
    return n.to_bytes(length, "big", signed=True)


def integer(n):
    return tlv(0x02, int_body(n))


def b128(v):
    out = [v & 0x7F]
    v >>= 7
    while v:
        out.append(0x80 | (v & 0x7F))
        v >>= 7
    return bytes(reversed(out))


def oid_body(dotted):
    arcs = [int(a) for a in dotted.split(".")]
    return b128(40 * arcs[0] + arcs[1]) + b"".join(b128(a) for a in arcs[2:])


def oid(dotted):
    return tlv(0x06, oid_body(dotted))


NULL = b"\x05\x00"


def bits(data, unused=0):
    return tlv(0x03, bytes([unused]) + data)


def octets(data):
    return tlv(0x04, data)


def boolean(v):
    return tlv(0x01, b"\xff" if v else b"\x00")


def utc(s):
    return tlv(0x17, s.encode())


def gen_time(s):
    return tlv(0x18, s.encode())


def explicit(n, body):
    return tlv(0xA0 + n, body)


def ctx(n, data):
    """Context-specific primitive [n]."""
    return tlv(0x80 + n, data)


def parse(der):
    """(tag, body, rest) of the first element (short or long definite lengths only)."""
    tag, first = der[0], der[1]
    if first < 0x80:
        length, off = first, 2
    else:
        n = first & 0x7F
        length, off = int.from_bytes(der[2 : 2 + n], "big"), 2 + n
    return tag, der[off : off + length], der[off + length :]


def children(body):
    out = []
    while body:
        tag, inner, body = parse(body)
        out.append((tag, inner))
    return out


# Object identifiers used below.
CN, O = "2.5.4.3", "2.5.4.10"
RSA, EC, ED25519 = "1.2.840.113549.1.1.1", "1.2.840.10045.2.1", "1.3.101.112"
SHA256_RSA, SHA384_RSA = "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12"
ECDSA_SHA256, ECDSA_SHA384, ECDSA_SHA512 = (
    "1.2.840.10045.4.3.2",
    "1.2.840.10045.4.3.3",
    "1.2.840.10045.4.3.4",
)
P256 = "1.2.840.10045.3.1.7"
BC, KU, SKID, AKID, SAN = "2.5.29.19", "2.5.29.15", "2.5.29.14", "2.5.29.35", "2.5.29.17"
NC, CRLDP, CP, EKU = "2.5.29.30", "2.5.29.31", "2.5.29.32", "2.5.29.37"
AIA, OCSP = "1.3.6.1.5.5.7.1.1", "1.3.6.1.5.5.7.48.1"
PRIVATE = "1.3.6.1.4.1.32473"  # the documentation enterprise number (RFC 5612)

# ---------------------------------------------------------------------------------------------
# Keys and signatures (openssl)
# ---------------------------------------------------------------------------------------------

KEY_SPECS = {
    "rsa2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "rsa2048-e3": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-pkeyopt", "rsa_keygen_pubexp:3"],
    "rsa1024": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    "p224": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-224", "-pkeyopt", "ec_param_enc:named_curve"],
    "p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt", "ec_param_enc:named_curve"],
    "p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-pkeyopt", "ec_param_enc:named_curve"],
    "p521": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521", "-pkeyopt", "ec_param_enc:named_curve"],
    "secp256k1": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp256k1", "-pkeyopt", "ec_param_enc:named_curve"],
    "ed25519": ["-algorithm", "ED25519"],
    "x25519": ["-algorithm", "X25519"],
}

# (signature algorithm OID, with NULL parameters, openssl digest) per signing key.
SIGNING = {
    "rsa2048": (SHA256_RSA, True, "sha256"),
    "rsa2048-e3": (SHA256_RSA, True, "sha256"),
    "rsa1024": (SHA256_RSA, True, "sha256"),
    "p224": (ECDSA_SHA256, False, "sha256"),
    "p256": (ECDSA_SHA256, False, "sha256"),
    "p384": (ECDSA_SHA384, False, "sha384"),
    "p521": (ECDSA_SHA512, False, "sha512"),
    "ed25519": (ED25519, False, None),
}


def run(args, data=None):
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def key_path(name):
    path = os.path.join(KEYS, name + ".pem")
    if not os.path.exists(path):
        os.makedirs(KEYS, exist_ok=True)
        run(["openssl", "genpkey", *KEY_SPECS[name], "-out", path])
    return path


_spki_cache = {}


def spki(name):
    if name not in _spki_cache:
        _spki_cache[name] = run(["openssl", "pkey", "-in", key_path(name), "-pubout", "-outform", "DER"])
    return _spki_cache[name]


def spki_parts(name):
    """(algorithm identifier body, subjectPublicKey bytes) of a key's SPKI."""
    _, body, _ = parse(spki(name))
    (_, ai), (_, bitstr) = children(body)
    return ai, bitstr[1:]


def rsa_numbers(name):
    _, key = spki_parts(name)
    (_, n), (_, e) = children(parse(key)[1])
    return int.from_bytes(n, "big", signed=True), int.from_bytes(e, "big", signed=True)


def sig_alg(signer):
    alg, null, _ = SIGNING[signer]
    return seq(oid(alg), NULL) if null else seq(oid(alg))


def sign(signer, tbs, reuse):
    alg, _, digest = SIGNING[signer]
    if alg.startswith("1.2.840.10045.4") and reuse is not None:
        return reuse
    with tempfile.NamedTemporaryFile() as f:
        f.write(tbs)
        f.flush()
        if digest is None:
            return run(["openssl", "pkeyutl", "-sign", "-inkey", key_path(signer), "-rawin", "-in", f.name])
        return run(["openssl", "dgst", "-" + digest, "-sign", key_path(signer), f.name])


# ---------------------------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------------------------


def name_of(*attrs):
    """A Name from (OID, string tag, bytes) attributes, one per RDN."""
    return seq(*[set_of(seq(oid(o), tlv(tag, v))) for o, tag, v in attrs])


def std_name(entry):
    return name_of((O, 0x13, b"go-oracle"), (CN, 0x0C, entry.encode()))


def ext(o, value, critical=False, raw_critical=None):
    crit = raw_critical if raw_critical is not None else (boolean(True) if critical else b"")
    return seq(oid(o), crit, octets(value))


KU_CERT_SIGN = bits(b"\x06", 1)  # keyCertSign | cRLSign


def ca_extensions(spk, bc=None, extra=()):
    skid = hashlib.sha1(spk).digest()
    return [
        ext(BC, bc if bc is not None else seq(boolean(True)), critical=True),
        ext(KU, KU_CERT_SIGN, critical=True),
        ext(SKID, octets(skid)),
        *extra,
    ]


def serial_of(entry):
    n = int.from_bytes(hashlib.sha256(entry.encode()).digest()[:16], "big")
    return int_body(n & ((1 << 127) - 1) | (1 << 120))


def build(entry, key="rsa2048", signer=None, spki_der=None, version=2, serial=None, issuer=None,
          subject=None, not_before=None, not_after=None, extensions=None, inner_alg=None,
          outer_alg=None, signature_bits=None, outer_extra=b"", trailing=b"", tbs_extra=b"",
          reuse=None):
    """DER of one certificate. Defaults: a self-signed RSA 2048 CA valid 2020-01-01 to 2045-01-01."""
    signer = signer or (key if key in SIGNING else "rsa2048")
    if spki_der is None:
        spki_der = spki(key)
    spk = children(parse(spki_der)[1])[1][1][1:]
    name = std_name(entry)
    tbs_body = b"".join([
        explicit(0, integer(version)) if version is not None else b"",
        tlv(0x02, serial if serial is not None else serial_of(entry)),
        inner_alg or sig_alg(signer),
        issuer if issuer is not None else name,
        seq(not_before or utc("200101000000Z"), not_after or utc("450101000000Z")),
        subject if subject is not None else name,
        spki_der,
        explicit(3, seq(*(extensions if extensions is not None else ca_extensions(spk)))) if extensions != [] else b"",
        tbs_extra,
    ])
    tbs = seq(tbs_body)
    signature = sign(signer, tbs, reuse(tbs) if reuse else None)
    sig = signature_bits if signature_bits is not None else bits(signature)
    return seq(tbs, outer_alg or inner_alg or sig_alg(signer), sig, outer_extra) + trailing


def existing_signature(entry):
    """The committed signature of `entry`, for the TBS it was made over (ECDSA reuse)."""
    path = os.path.join(ROOTS, entry + ".pem")
    if not os.path.exists(path):
        return lambda tbs: None
    with open(path) as f:
        body = "".join(line.strip() for line in f if not line.startswith("-----"))
    der = base64.b64decode(body)
    items = children(parse(der)[1])
    old_tbs = tlv(items[0][0], items[0][1])
    old_sig = items[2][1][1:]
    return lambda tbs: old_sig if tbs == old_tbs else None


def spki_with(alg_body, key_bytes, unused=0):
    return seq(seq(alg_body), bits(key_bytes, unused))


def rsa_spki(n_body, e_body, params=NULL):
    key = seq(tlv(0x02, n_body), tlv(0x02, e_body))
    return spki_with(oid(RSA) + params, key)


def san(*names):
    return seq(*names)


# ---------------------------------------------------------------------------------------------
# The corpus
# ---------------------------------------------------------------------------------------------

ENTRIES = []


def entry(description):
    def register(f):
        ENTRIES.append((f.__name__.replace("_", "-"), description, f))
        return f

    return register


# --- well-formed controls --------------------------------------------------------------------


@entry("RSA 2048, e=65537, self-signed CA (control)")
def ok_rsa2048(n):
    return build(n)


@entry("RSA 2048 with public exponent 3 (control: odd, at least 3)")
def ok_rsa_e3(n):
    return build(n, key="rsa2048-e3")


@entry("ECDSA P-256, self-signed CA (control)")
def ok_p256(n):
    return build(n, key="p256", reuse=existing_signature(n))


@entry("ECDSA P-384, self-signed CA (control)")
def ok_p384(n):
    return build(n, key="p384", reuse=existing_signature(n))


@entry("Ed25519, self-signed CA (control)")
def ok_ed25519(n):
    return build(n, key="ed25519")


@entry("serial number of exactly 20 bytes (control)")
def ok_serial_20_bytes(n):
    return build(n, serial=b"\x7f" + bytes(range(1, 20)))


@entry("basicConstraints CA:TRUE not marked critical (Go reads it; control)")
def ok_bc_not_critical(n):
    spk = spki_parts("rsa2048")[1]
    exts = ca_extensions(spk)
    exts[0] = ext(BC, seq(boolean(True)))
    return build(n, extensions=exts)


@entry("basicConstraints CA:TRUE, pathLenConstraint 0 (control)")
def ok_pathlen_0(n):
    return build(n, extensions=ca_extensions(spki_parts("rsa2048")[1], bc=seq(boolean(True), integer(0))))


@entry("every extension Go parses, well-formed: SAN (DNS, IPv4, IPv6, spiffe URI, email), AKID, EKU, "
       "CRL distribution point, AIA, certificate policies, name constraints, a non-critical private extension (control)")
def ok_many_extensions(n):
    spk = spki_parts("rsa2048")[1]
    extra = [
        ext(AKID, seq(ctx(0, hashlib.sha1(spk).digest()))),
        ext(SAN, san(ctx(2, b"root.b.test"), ctx(7, bytes([10, 0, 0, 1])), ctx(7, bytes(15) + b"\x01"),
                     ctx(6, b"spiffe://b.test/ns/istio-system/sa/istiod"), ctx(1, b"pki@b.test"))),
        ext(EKU, seq(oid("1.3.6.1.5.5.7.3.1"), oid("1.3.6.1.5.5.7.3.2"))),
        ext(CRLDP, seq(seq(explicit(0, explicit(0, ctx(6, b"http://pki.b.test/root.crl")))))),
        ext(AIA, seq(seq(oid(OCSP), ctx(6, b"http://ocsp.b.test")))),
        ext(CP, seq(seq(oid("2.5.29.32.0")))),
        ext(NC, seq(explicit(0, seq(ctx(2, b".b.test")) + seq(ctx(7, bytes([10, 0, 0, 0, 255, 0, 0, 0])))))),
        ext(PRIVATE + ".1", octets(b"private")),
    ]
    return build(n, extensions=ca_extensions(spk, extra=extra))


@entry("notAfter as GeneralizedTime 20550101000000Z (control)")
def ok_generalized_time(n):
    return build(n, not_after=gen_time("20550101000000Z"))


@entry("subject with PrintableString, UTF8String (non-ASCII), IA5String emailAddress (control)")
def ok_name_string_types(n):
    subject = name_of((O, 0x13, b"go-oracle"), (CN, 0x0C, "ok-name-string-types Wurzel \u00e4".encode()),
                      ("1.2.840.113549.1.9.1", 0x16, b"pki@b.test"))
    return build(n, subject=subject, issuer=subject)


# --- the nine of issue 10 ---------------------------------------------------------------------


@entry("negative serial number (Go >= 1.23 in a go1.23 module refuses it)")
def odd_negative_serial(n):
    return build(n, serial=int_body(-(1 << 120) - 12345))


@entry("serial number not minimally encoded (leading 0x00 before a byte < 0x80)")
def odd_serial_not_minimal(n):
    return build(n, serial=b"\x00\x01\x02\x03\x04\x05\x06\x07")


@entry("subjectKeyIdentifier extension twice")
def odd_duplicate_extension(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext(SKID, octets(b"\x01" * 20))]))


@entry("ECDSA P-256 key whose point is not on the curve (last byte of Y changed)")
def odd_ec_point_off_curve(n):
    ai, point = spki_parts("p256")
    return build(n, spki_der=spki_with(ai, point[:-1] + bytes([point[-1] ^ 1])), signer="rsa2048")


@entry("ECDSA key on secp256k1 (a curve Go does not support)")
def odd_secp256k1(n):
    return build(n, key="secp256k1", signer="rsa2048")


@entry("RSA modulus encoded as a negative INTEGER")
def odd_rsa_negative_modulus(n):
    modulus, e = rsa_numbers("rsa2048")
    return build(n, spki_der=rsa_spki(modulus.to_bytes(256, "big"), int_body(e)))


@entry("RSA public exponent 2^64+1 (does not fit Go's int)")
def odd_rsa_exponent_2_64_plus_1(n):
    modulus, _ = rsa_numbers("rsa2048")
    return build(n, spki_der=rsa_spki(int_body(modulus), int_body((1 << 64) + 1)))


@entry("subjectAltName iPAddress of 5 bytes")
def odd_san_ip_5_bytes(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext(SAN, san(ctx(7, bytes([10, 0, 0, 1, 0]))))]))


@entry("X.509 version 4 (version field 3)")
def odd_version_4(n):
    return build(n, version=3)


# --- more that Go's parser refuses ------------------------------------------------------------


@entry("two zero bytes after the certificate")
def odd_trailing_data(n):
    return build(n, trailing=b"\x00\x00")


@entry("signature algorithm inside the TBS differs from the outer one")
def odd_signature_algorithm_mismatch(n):
    return build(n, outer_alg=seq(oid(SHA384_RSA), NULL))


@entry("subject commonName with a long-form length below 128 (not DER)")
def odd_length_not_minimal(n):
    value = "odd-length-not-minimal".encode()
    subject = seq(set_of(seq(oid(O), tlv(0x13, b"go-oracle"))),
                  set_of(seq(oid(CN), b"\x0c\x81" + bytes([len(value)]) + value)))
    return build(n, subject=subject, issuer=std_name(n))


@entry("non-critical private extension with an OID arc of 2^31")
def odd_oid_arc_2_31(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext("1.3.6.1.4.1.2147483648.1", octets(b"x"))]))


@entry("subject attribute OID with a non-minimal arc (0x80 leading octet)")
def odd_oid_not_minimal(n):
    subject = seq(set_of(seq(oid(O), tlv(0x13, b"go-oracle"))),
                  set_of(seq(tlv(0x06, b"\x55\x80\x04\x03"), tlv(0x0C, n.encode()))))
    return build(n, subject=subject, issuer=std_name(n))


@entry("subject organizationName PrintableString containing '@'")
def odd_printable_string_at_sign(n):
    subject = name_of((O, 0x13, b"go@oracle"), (CN, 0x0C, n.encode()))
    return build(n, subject=subject, issuer=std_name(n))


@entry("subject commonName UTF8String that is not UTF-8")
def odd_utf8_invalid(n):
    subject = name_of((O, 0x13, b"go-oracle"), (CN, 0x0C, b"odd-\xff\xfe"))
    return build(n, subject=subject, issuer=std_name(n))


@entry("subject commonName as VisibleString (a string type Go does not read)")
def odd_name_visible_string(n):
    subject = name_of((O, 0x13, b"go-oracle"), (CN, 0x1A, n.encode()))
    return build(n, subject=subject, issuer=std_name(n))


@entry("subject commonName BMPString of odd length")
def odd_bmpstring_odd_length(n):
    subject = name_of((O, 0x13, b"go-oracle"), (CN, 0x1E, b"\x00a\x00"))
    return build(n, subject=subject, issuer=std_name(n))


@entry("basicConstraints critical flag encoded as BOOLEAN 0x01 (not DER)")
def odd_critical_not_der_boolean(n):
    spk = spki_parts("rsa2048")[1]
    exts = ca_extensions(spk)
    exts[0] = ext(BC, seq(boolean(True)), raw_critical=tlv(0x01, b"\x01"))
    return build(n, extensions=exts)


@entry("basicConstraints cA encoded as BOOLEAN 0x01 (not DER)")
def odd_bc_ca_not_der_boolean(n):
    return build(n, extensions=ca_extensions(spki_parts("rsa2048")[1], bc=seq(tlv(0x01, b"\x01"))))


@entry("authorityKeyIdentifier marked critical")
def odd_akid_critical(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext(AKID, seq(ctx(0, b"\x01" * 20)), critical=True)]))


@entry("subjectKeyIdentifier marked critical")
def odd_skid_critical(n):
    spk = spki_parts("rsa2048")[1]
    exts = ca_extensions(spk)
    exts[2] = ext(SKID, octets(hashlib.sha1(spk).digest()), critical=True)
    return build(n, extensions=exts)


@entry("authorityInfoAccess marked critical")
def odd_aia_critical(n):
    spk = spki_parts("rsa2048")[1]
    aia = ext(AIA, seq(seq(oid(OCSP), ctx(6, b"http://ocsp.b.test"))), critical=True)
    return build(n, extensions=ca_extensions(spk, extra=[aia]))


@entry("Ed25519 key with NULL algorithm parameters")
def odd_ed25519_with_params(n):
    _, key = spki_parts("ed25519")
    return build(n, spki_der=spki_with(oid(ED25519) + NULL, key), signer="ed25519")


@entry("Ed25519 key of 31 bytes")
def odd_ed25519_short_key(n):
    _, key = spki_parts("ed25519")
    return build(n, spki_der=spki_with(oid(ED25519), key[:31]), signer="ed25519")


@entry("RSA key without the NULL algorithm parameters")
def odd_rsa_without_null(n):
    modulus, e = rsa_numbers("rsa2048")
    return build(n, spki_der=rsa_spki(int_body(modulus), int_body(e), params=b""))


@entry("ECDSA P-256 key as a compressed point")
def odd_ec_compressed_point(n):
    ai, point = spki_parts("p256")
    y_odd = point[-1] & 1
    return build(n, spki_der=spki_with(ai, bytes([2 + y_odd]) + point[1:33]), signer="rsa2048")


@entry("ECDSA key with explicit curve parameters instead of a named curve")
def odd_ec_explicit_parameters(n):
    _, point = spki_parts("p256")
    params = seq(integer(1), seq(oid("1.2.840.10045.1.1"), integer((1 << 256) - 1)))
    return build(n, spki_der=spki_with(oid(EC) + params, point), signer="rsa2048")


@entry("notBefore UTCTime without the trailing Z")
def odd_utctime_without_z(n):
    return build(n, not_before=utc("200101000000"))


@entry("notBefore UTCTime on February 30")
def odd_utctime_february_30(n):
    return build(n, not_before=utc("200230000000Z"))


@entry("notAfter GeneralizedTime with a fraction .5 (Go reads no fractions)")
def odd_generalized_time_fraction(n):
    return build(n, not_after=gen_time("20450101000000.5Z"))


@entry("notAfter GeneralizedTime in local time (no Z)")
def odd_generalized_time_local(n):
    return build(n, not_after=gen_time("20450101000000"))


@entry("notAfter encoded as a PrintableString")
def odd_time_not_a_time(n):
    return build(n, not_after=tlv(0x13, b"450101000000Z"))


@entry("name constraints with an IP mask that is not a prefix (255.0.255.0)")
def odd_name_constraints_bad_mask(n):
    spk = spki_parts("rsa2048")[1]
    nc = ext(NC, seq(explicit(0, seq(ctx(7, bytes([10, 0, 0, 0, 255, 0, 255, 0]))))), critical=True)
    return build(n, extensions=ca_extensions(spk, extra=[nc]))


@entry("name constraints with neither permitted nor excluded subtrees")
def odd_name_constraints_empty(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext(NC, seq(), critical=True)]))


@entry("keyUsage BIT STRING whose unused bits are not zero")
def odd_keyusage_bad_padding(n):
    spk = spki_parts("rsa2048")[1]
    exts = ca_extensions(spk)
    exts[1] = ext(KU, bits(b"\x07", 1), critical=True)
    return build(n, extensions=exts)


@entry("signature BIT STRING whose unused bits are not zero")
def odd_signature_bad_padding(n):
    return build(n, signature_bits=bits(b"\x01" * 255 + b"\x03", 1))


@entry("subjectAltName entry with a high tag number (Go reads low tag numbers only)")
def odd_san_high_tag_number(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext(SAN, san(b"\x9f\x20\x01x", ctx(2, b"b.test")))]))


@entry("subjectAltName dNSName with non-ASCII bytes")
def odd_san_dns_non_ascii(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext(SAN, san(ctx(2, "r\u00e9.b.test".encode())))]))


@entry("subjectAltName URI with a space in the host")
def odd_san_uri_bad_host(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext(SAN, san(ctx(6, b"spiffe://b test/ns/x")))]))


# --- Go parses these; the hook refuses them (stricter) ----------------------------------------


@entry("RSA 1024 (Go parses it; too short for a root)")
def rsa1024(n):
    return build(n, key="rsa1024")


@entry("RSA 2048 with an even public exponent 65536")
def rsa_exponent_even(n):
    modulus, _ = rsa_numbers("rsa2048")
    return build(n, spki_der=rsa_spki(int_body(modulus), int_body(65536)))


@entry("RSA 2048 with public exponent 2^32+1 (fits Go's int; Go's crypto/rsa refuses it when verifying)")
def rsa_exponent_2_32_plus_1(n):
    modulus, _ = rsa_numbers("rsa2048")
    return build(n, spki_der=rsa_spki(int_body(modulus), int_body((1 << 32) + 1)))


@entry("ECDSA P-224 (Go supports the curve; the hook does not)")
def p224(n):
    return build(n, key="p224", reuse=existing_signature(n))


@entry("ECDSA P-521")
def p521(n):
    return build(n, key="p521", reuse=existing_signature(n))


@entry("X25519 key (Go parses it as an unknown algorithm; not a signing key)")
def x25519_key(n):
    return build(n, key="x25519", signer="rsa2048")


@entry("public key algorithm 1.3.6.1.4.1.32473.2 unknown to everyone (Go keeps it unparsed)")
def unknown_key_algorithm(n):
    return build(n, spki_der=spki_with(oid(PRIVATE + ".2"), b"\x01" * 32))


@entry("unknown critical extension (Go parses it; verification fails on it)")
def unknown_critical_extension(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk, extra=[ext(PRIVATE + ".3", octets(b"x"), critical=True)]))


@entry("critical subjectAltName holding only an otherName (Go leaves it unhandled)")
def san_critical_only_othername(n):
    spk = spki_parts("rsa2048")[1]
    other = explicit(0, oid(PRIVATE + ".4") + explicit(0, tlv(0x0C, b"x")))
    return build(n, extensions=ca_extensions(spk, extra=[ext(SAN, san(other), critical=True)]))


@entry("empty issuer name")
def empty_issuer(n):
    return build(n, issuer=seq())


@entry("basicConstraints CA:TRUE with a negative pathLenConstraint")
def negative_pathlen(n):
    return build(n, extensions=ca_extensions(spki_parts("rsa2048")[1], bc=seq(boolean(True), integer(-1))))


@entry("serial number zero")
def serial_zero(n):
    return build(n, serial=b"\x00")


@entry("serial number of 21 bytes")
def serial_21_bytes(n):
    return build(n, serial=b"\x01" * 21)


@entry("X.509 version 1 (no extensions: not a CA for Go)")
def version_1(n):
    return build(n, version=None, extensions=[])


@entry("X.509 version 1 with a CA:TRUE extension block (Go does not read extensions of v1)")
def version_1_with_extensions(n):
    return build(n, version=None)


@entry("basicConstraints CA:FALSE")
def bc_ca_false(n):
    return build(n, extensions=ca_extensions(spki_parts("rsa2048")[1], bc=seq()))


@entry("version 3 without basicConstraints")
def no_basic_constraints(n):
    spk = spki_parts("rsa2048")[1]
    return build(n, extensions=ca_extensions(spk)[1:])


@entry("notBefore UTCTime with an offset +0100 (Go accepts it; RFC 5280 wants Z)")
def utctime_with_offset(n):
    return build(n, not_before=utc("200101000000+0100"))


@entry("notBefore UTCTime without seconds (Go accepts it)")
def utctime_without_seconds(n):
    return build(n, not_before=utc("2001010000Z"))


@entry("a NULL after the signature inside the certificate SEQUENCE (Go ignores it)")
def outer_sequence_extra_element(n):
    return build(n, outer_extra=NULL)


@entry("a NULL after the extensions inside tbsCertificate (Go ignores it)")
def tbs_extra_element(n):
    return build(n, tbs_extra=NULL)


# --- trailing elements inside a DER field: Go's parser ignores them, BoringSSL (Envoy) refuses
# the certificate, and with it the whole validation context (tests/go_oracle.rs) ----------------


@entry("a NULL after the value inside the subjectKeyIdentifier extension's SEQUENCE")
def extension_extra_element(n):
    spk = spki_parts("rsa2048")[1]
    exts = ca_extensions(spk)
    exts[2] = seq(oid(SKID), octets(octets(hashlib.sha1(spk).digest())), NULL)
    return build(n, extensions=exts)


@entry("a NULL after the value inside the CN attribute of the subject and issuer")
def name_entry_extra_element(n):
    name = seq(set_of(seq(oid(O), tlv(0x13, b"go-oracle"))),
               set_of(seq(oid(CN), tlv(0x0C, n.encode()), NULL)))
    return build(n, subject=name, issuer=name)


@entry("a NULL after notAfter inside the validity SEQUENCE")
def validity_extra_element(n):
    return build(n, not_after=utc("450101000000Z") + NULL)


@entry("a NULL after the parameters inside both signature algorithm identifiers")
def algorithm_identifier_extra_element(n):
    alg = seq(oid(SHA256_RSA), NULL, NULL)
    return build(n, inner_alg=alg, outer_alg=alg)


@entry("a NULL after the key inside the subjectPublicKeyInfo SEQUENCE")
def public_key_extra_element(n):
    return build(n, spki_der=tlv(0x30, parse(spki("rsa2048"))[1] + NULL))


@entry("rfc822Name name constraint naming a mailbox")
def name_constraints_mailbox(n):
    spk = spki_parts("rsa2048")[1]
    nc = ext(NC, seq(explicit(0, seq(ctx(1, b"pki@b.test")))), critical=True)
    return build(n, extensions=ca_extensions(spk, extra=[nc]))


# ---------------------------------------------------------------------------------------------


def pem(der):
    b64 = base64.b64encode(der).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def main():
    os.makedirs(ROOTS, exist_ok=True)
    names = set()
    index = ["# name\tdescription (written by scripts/gen-odd-roots.py)"]
    for name, description, make in ENTRIES:
        der = make(name)
        with open(os.path.join(ROOTS, name + ".pem"), "w") as f:
            f.write(pem(der))
        names.add(name + ".pem")
        index.append(f"{name}\t{description}")
    for stale in sorted(set(os.listdir(ROOTS)) - names):
        os.remove(os.path.join(ROOTS, stale))
    with open(os.path.join(ORACLE, "index.tsv"), "w") as f:
        f.write("\n".join(index) + "\n")
    print(f"{len(ENTRIES)} certificates in {os.path.relpath(ROOTS, ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
