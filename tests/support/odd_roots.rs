//! The nine roots found in trust bundles before roots were checked as Go reads them: Go's
//! `crypto/x509` (istiod) refuses each, and one such entry makes istiod drop every
//! federation's trust. With the text that names each in `TrustBundleReady`. Shared by the
//! bad-input battery and the Go oracle test, so the two cannot drift apart.

pub const ODD_ROOTS: [(&str, &str); 9] = [
    ("odd-negative-serial", "serial number is negative"),
    (
        "odd-serial-not-minimal",
        "serial number is not minimally encoded",
    ),
    (
        "odd-duplicate-extension",
        "extension 2.5.29.14 appears more than once",
    ),
    (
        "odd-ec-point-off-curve",
        "public key: point is not on curve P-256",
    ),
    (
        "odd-secp256k1",
        "public key: unsupported elliptic curve secp256k1",
    ),
    (
        "odd-rsa-negative-modulus",
        "public key: RSA modulus is not a positive number",
    ),
    (
        "odd-rsa-exponent-2-64-plus-1",
        "public key: RSA public exponent is not a minimal DER INTEGER of at most 64 bits",
    ),
    (
        "odd-san-ip-5-bytes",
        "subjectAltName: IP address of 5 bytes (4 or 16 expected)",
    ),
    ("odd-version-4", "X.509 version 4: a root must be version 3"),
];
