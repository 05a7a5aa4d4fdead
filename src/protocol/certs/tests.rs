use super::der::*;
use super::extensions::*;
use super::go_view::*;
use super::keys::*;
use super::pem::*;
use super::rejection::*;
use super::roots::*;
use super::rules::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

#[test]
fn p521_points_are_checked_on_the_curve() {
    // An uncompressed SEC1 point of the right length that is not on P-521.
    let mut off = vec![0x04];
    off.extend(std::iter::repeat_n(0x01, 2 * 66));
    assert_eq!(ec_point_on_curve(Curve::P521, &off).ok(), Some(false));
    // The generator is.
    let g = "0400c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650";
    let g: Vec<u8> = (0..g.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&g[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(ec_point_on_curve(Curve::P521, &g).ok(), Some(true));
}
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    PublicKeyData,
};
use ring::signature::{UnparsedPublicKey, ED25519};

/// 2025-06-01T00:00:00Z.
const NOW: i64 = 1_748_736_000;
#[test]
fn go_version_numbers_from_one_and_refuses_above_three() {
    assert_eq!(go_version(&mut Der(&[0x02, 0x01, 0x01])), Ok(1));
    assert_eq!(go_version(&mut Der(&[0xa0, 0x03, 0x02, 0x01, 0x02])), Ok(3));
    assert_eq!(
        go_version(&mut Der(&[0xa0, 0x03, 0x02, 0x01, 0x03])),
        Err(CertRejection::Version { version: 4 })
    );
    assert_eq!(
        go_version(&mut Der(&[0xa0, 0x03, 0x02, 0x01, 0xff])),
        Err(malformed("version", "not a non-negative DER INTEGER"))
    );
}

#[test]
fn go_serial_refuses_negative_and_padded() {
    assert_eq!(go_serial(&mut Der(&[0x02, 0x01, 0x7f])), Ok(&[0x7f][..]));
    assert_eq!(
        go_serial(&mut Der(&[0x02, 0x01, 0x80])),
        Err(CertRejection::Serial("is negative"))
    );
    assert_eq!(
        go_serial(&mut Der(&[0x02, 0x02, 0x00, 0x01])),
        Err(CertRejection::Serial("is not minimally encoded"))
    );
}

#[test]
fn go_basic_constraints_reads_ca_and_path_length() {
    assert_eq!(go_basic_constraints(&[0x30, 0x00]), Ok((false, None)));
    assert_eq!(
        go_basic_constraints(&[0x30, 0x06, 0x01, 0x01, 0xff, 0x02, 0x01, 0x00]),
        Ok((true, Some(0)))
    );
    assert_eq!(
        go_basic_constraints(&[0x30, 0x03, 0x01, 0x01, 0x01]),
        Err(malformed("basicConstraints", "cA is not a DER BOOLEAN"))
    );
}

#[test]
fn go_refuses_critical_key_identifiers_before_reading_them() {
    let garbage = [0x04];
    assert_eq!(
        go_subject_key_identifier(true, &garbage),
        Err(malformed("subjectKeyIdentifier", "marked critical"))
    );
    assert_eq!(
        go_subject_key_identifier(false, &garbage),
        Err(malformed("subjectKeyIdentifier", "not a DER OCTET STRING"))
    );
    assert_eq!(
        go_authority_info_access(true, &garbage),
        Err(malformed("authorityInfoAccess", "marked critical"))
    );
    assert_eq!(go_authority_key_identifier(false, &[0x30, 0x00]), Ok(()));
}

/// 2024-01-02T00:00:00Z.
const JAN_2_2024: i64 = 1_704_153_600;
/// 2030-01-01T00:00:00Z.
const JAN_1_2030: i64 = 1_893_456_000;
/// 2040-01-01T00:00:00Z.
const JAN_1_2040: i64 = 2_208_988_800;
/// 2020-01-01T00:00:00Z.
const JAN_1_2020: i64 = 1_577_836_800;

/// Deckhouse test fixture key pair.
const FIXTURE_PRIV_B64: &str = "MC4CAQAwBQYDK2VwBCIEIMgNk3rr2AmIIlkKTAM9fG6+hMKvwF+pMAT3ID3M0OFK";
const FIXTURE_PUB_B64: &str = "MCowBQYDK2VwAyEAKWjdKDeIIT4xESCMhbol662vNMpq4DxFct8GvJ500Xs=";

struct TestCert {
    der: Vec<u8>,
    /// Canonical PEM built here, independently of `to_pem`.
    pem: String,
}

fn make_cert(
    cn: &str,
    is_ca: IsCa,
    not_before: (i32, u8, u8),
    not_after: (i32, u8, u8),
) -> TestCert {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = is_ca;
    params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).unwrap();
    let der = cert.der().to_vec();
    let pem = independent_pem("CERTIFICATE", &der);
    TestCert { der, pem }
}

fn ca(cn: &str) -> TestCert {
    make_cert(
        cn,
        IsCa::Ca(BasicConstraints::Unconstrained),
        (2020, 1, 1),
        (2040, 1, 1),
    )
}

/// PEM written without the module's code: 64-column lines, LF endings.
fn independent_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn fixture_private_der() -> Vec<u8> {
    STANDARD.decode(FIXTURE_PRIV_B64).unwrap()
}

fn fixture_public_raw() -> [u8; 32] {
    let spki = STANDARD.decode(FIXTURE_PUB_B64).unwrap();
    assert_eq!(spki.len(), 44);
    spki[12..].try_into().unwrap()
}

fn wrap(label: &str, b64: &str) -> String {
    format!("-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n")
}

// ---------- fingerprint / to_pem ----------

#[test]
fn fingerprint_known_vector() {
    assert_eq!(
        fingerprint(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        fingerprint(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn to_pem_is_canonical() {
    let der: Vec<u8> = (0u8..=255).collect();
    assert_eq!(
        to_pem("CERTIFICATE", &der),
        independent_pem("CERTIFICATE", &der)
    );
    // 48 bytes encode to exactly 64 columns: no empty line before END.
    let der48 = [7u8; 48];
    let pem = to_pem("X", &der48);
    assert_eq!(pem.lines().count(), 3);
    assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    assert_eq!(to_pem("X", &[]), "-----BEGIN X-----\n-----END X-----\n");
}

// ---------- pem_blocks ----------

#[test]
fn pem_blocks_spans_remove_cleanly() {
    let a = ca("Span A");
    let b = ca("Span B");
    let b_crlf = b.pem.replace('\n', "\r\n");
    let head = "# comment line\n\n";
    let mid = "between blocks\r\n";
    let tail = "  trailing text without newline";
    let text = format!("{head}{}{mid}{b_crlf}{tail}", a.pem);

    let blocks = pem_blocks(&text).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].label, "CERTIFICATE");
    assert_eq!(blocks[0].der, a.der);
    assert_eq!(blocks[1].der, b.der);
    assert_eq!(blocks[0].start, head.len());
    assert_eq!(blocks[0].end, head.len() + a.pem.len());
    assert_eq!(&text[blocks[0].start..blocks[0].end], a.pem);
    assert_eq!(&text[blocks[1].start..blocks[1].end], b_crlf);

    let mut without_first = text.clone();
    without_first.replace_range(blocks[0].start..blocks[0].end, "");
    assert_eq!(without_first, format!("{head}{mid}{b_crlf}{tail}"));

    let mut without_second = text.clone();
    without_second.replace_range(blocks[1].start..blocks[1].end, "");
    assert_eq!(without_second, format!("{head}{}{mid}{tail}", a.pem));
}

#[test]
fn pem_blocks_last_block_without_newline() {
    let a = ca("No newline");
    let text = format!("x\n{}", a.pem.trim_end());
    let blocks = pem_blocks(&text).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].start, 2);
    assert_eq!(blocks[0].end, text.len());
    assert_eq!(blocks[0].der, a.der);
}

#[test]
fn pem_blocks_tolerates_whitespace_crlf_and_long_lines() {
    let a = ca("Whitespace");
    let b64 = STANDARD.encode(&a.der);
    // One long body line, indented armor, trailing spaces, CRLF.
    let text = format!(
        "   -----BEGIN CERTIFICATE-----  \r\n\t{b64}   \r\n  -----END CERTIFICATE-----\t\r\n"
    );
    let blocks = pem_blocks(&text).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].der, a.der);
    assert_eq!((blocks[0].start, blocks[0].end), (0, text.len()));

    // Odd line lengths (17 columns).
    let odd: Vec<String> = b64
        .as_bytes()
        .chunks(17)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let text = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----",
        odd.join("\n")
    );
    assert_eq!(pem_blocks(&text).unwrap()[0].der, a.der);
}

#[test]
fn pem_blocks_no_blocks_is_empty() {
    assert!(pem_blocks("").unwrap().is_empty());
    assert!(pem_blocks("just some text\nno pem here\n")
        .unwrap()
        .is_empty());
    // A stray END outside any block is ignored text.
    assert!(pem_blocks("-----END CERTIFICATE-----\n")
        .unwrap()
        .is_empty());
}

#[test]
fn pem_blocks_errors_name_the_block() {
    let a = ca("Err");
    let unterminated = format!("{}-----BEGIN CERTIFICATE-----\nMIIB\n", a.pem);
    let e = pem_blocks(&unterminated).unwrap_err();
    assert!(e.contains("block 2"), "{e}");
    assert!(e.contains("no matching END"), "{e}");

    let nested = format!("-----BEGIN CERTIFICATE-----\nMIIB\n{}", a.pem);
    let e = pem_blocks(&nested).unwrap_err();
    assert!(
        e.contains("block 1") && e.contains("no matching END"),
        "{e}"
    );

    let mismatched = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let e = pem_blocks(mismatched).unwrap_err();
    assert!(e.contains("block 1"), "{e}");
    assert!(e.contains("END PRIVATE KEY"), "{e}");

    let bad_b64 = format!("{}{}", a.pem, wrap("CERTIFICATE", "not*base64!"));
    let e = pem_blocks(&bad_b64).unwrap_err();
    assert!(e.contains("block 2") && e.contains("invalid base64"), "{e}");
}

// ---------- check_roots ----------

#[test]
fn accepts_a_ca_with_canonical_fields() {
    let a = ca("Root A");
    let check = check_roots(&a.pem, NOW, &[]).unwrap();
    assert!(check.rejected.is_empty(), "{:?}", check.rejected);
    assert_eq!(
        check.accepted,
        vec![RootCert {
            pem: a.pem.clone(),
            fingerprint: sha256_hex(&a.der),
            subject: "CN=Root A".to_string(),
            not_after: JAN_1_2040,
        }]
    );
}

#[test]
fn two_cas_accepted_in_order_with_canonical_pem() {
    let a = ca("Root A");
    let b = ca("Root B");
    // Peer formatting: CRLF, blank lines, comments.
    let bundle = format!(
        "# bundle\r\n{}\r\n\r\n{}",
        a.pem.replace('\n', "\r\n"),
        b.pem
    );
    let check = check_roots(&bundle, NOW, &[]).unwrap();
    assert!(check.rejected.is_empty());
    assert_eq!(check.accepted.len(), 2);
    assert_eq!(check.accepted[0].pem, a.pem);
    assert_eq!(check.accepted[1].pem, b.pem);
    assert_eq!(check.accepted[0].fingerprint, sha256_hex(&a.der));
    assert_eq!(check.accepted[1].fingerprint, sha256_hex(&b.der));
    assert_eq!(check.accepted[1].subject, "CN=Root B");
}

#[test]
fn duplicates_are_accepted_once() {
    let a = ca("Dup");
    let b = ca("Other");
    let bundle = format!("{}{}{}", a.pem, b.pem, a.pem.replace('\n', "\r\n"));
    let check = check_roots(&bundle, NOW, &[]).unwrap();
    assert!(check.rejected.is_empty());
    let fps: Vec<&str> = check
        .accepted
        .iter()
        .map(|r| r.fingerprint.as_str())
        .collect();
    assert_eq!(fps, vec![sha256_hex(&a.der), sha256_hex(&b.der)]);
}

#[test]
fn leaf_is_not_ca() {
    let no_ext = make_cert("Leaf", IsCa::NoCa, (2020, 1, 1), (2040, 1, 1));
    let explicit = make_cert("Leaf2", IsCa::ExplicitNoCa, (2020, 1, 1), (2040, 1, 1));
    let bundle = format!("{}{}", no_ext.pem, explicit.pem);
    let check = check_roots(&bundle, NOW, &[]).unwrap();
    assert!(check.accepted.is_empty());
    assert_eq!(
        check.rejected,
        vec![(1, CertRejection::NotCa), (2, CertRejection::NotCa)]
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let ca_bc = IsCa::Ca(BasicConstraints::Unconstrained);
    let expired = make_cert("Old", ca_bc, (2020, 1, 1), (2024, 1, 2));
    let future = make_cert("Future", ca_bc, (2030, 1, 1), (2040, 1, 1));
    let good = ca("Good");
    let bundle = format!("{}{}{}", expired.pem, good.pem, future.pem);
    let check = check_roots(&bundle, NOW, &[]).unwrap();
    assert_eq!(check.accepted.len(), 1);
    assert_eq!(check.accepted[0].fingerprint, sha256_hex(&good.der));
    assert_eq!(
        check.rejected,
        vec![
            (
                1,
                CertRejection::Expired {
                    not_after: JAN_2_2024
                }
            ),
            (
                3,
                CertRejection::NotYetValid {
                    not_before: JAN_1_2030
                }
            ),
        ]
    );
    assert_eq!(check.rejected[0].1.to_string(), "expired on 2024-01-02");
    assert_eq!(
        check.rejected[1].1.to_string(),
        "not valid before 2030-01-01"
    );
}

#[test]
fn validity_bounds_are_inclusive() {
    let a = ca("Bounds");
    assert_eq!(
        check_roots(&a.pem, JAN_1_2020, &[]).unwrap().accepted.len(),
        1
    );
    assert_eq!(
        check_roots(&a.pem, JAN_1_2040, &[]).unwrap().accepted.len(),
        1
    );
    assert_eq!(
        check_roots(&a.pem, JAN_1_2040 + 1, &[]).unwrap().rejected,
        vec![(
            1,
            CertRejection::Expired {
                not_after: JAN_1_2040
            }
        )]
    );
    assert_eq!(
        check_roots(&a.pem, JAN_1_2020 - 1, &[]).unwrap().rejected,
        vec![(
            1,
            CertRejection::NotYetValid {
                not_before: JAN_1_2020
            }
        )]
    );
}

#[test]
fn own_root_is_rejected() {
    let own = ca("Own");
    let peer = ca("Peer");
    let bundle = format!("{}{}", peer.pem, own.pem);
    let own_fp = sha256_hex(&own.der);
    let check = check_roots(&bundle, NOW, std::slice::from_ref(&own_fp)).unwrap();
    assert_eq!(check.accepted.len(), 1);
    assert_eq!(check.accepted[0].fingerprint, sha256_hex(&peer.der));
    assert_eq!(check.rejected, vec![(2, CertRejection::OwnRoot)]);
    // Upper-case fingerprints from elsewhere match too.
    let check = check_roots(&bundle, NOW, &[own_fp.to_uppercase()]).unwrap();
    assert_eq!(check.rejected, vec![(2, CertRejection::OwnRoot)]);
}

#[test]
fn non_certificates_and_garbage_der() {
    let a = ca("Fine");
    let key = wrap("PRIVATE KEY", FIXTURE_PRIV_B64);
    let garbage = wrap("CERTIFICATE", &STANDARD.encode(b"hello world"));
    let mut trailing_der = a.der.clone();
    trailing_der.push(0);
    let trailing = independent_pem("CERTIFICATE", &trailing_der);
    let bundle = format!("{key}{garbage}{trailing}{}", a.pem);
    let check = check_roots(&bundle, NOW, &[]).unwrap();
    assert_eq!(check.accepted.len(), 1);
    assert_eq!(check.rejected.len(), 3);
    assert_eq!(
        check.rejected[0],
        (
            1,
            CertRejection::NotCertificate {
                label: "PRIVATE KEY".to_string()
            }
        )
    );
    assert_eq!(
        check.rejected[0].1.to_string(),
        "not a certificate (PEM label PRIVATE KEY)"
    );
    assert_eq!(check.rejected[1].0, 2);
    assert!(matches!(check.rejected[1].1, CertRejection::Unparsable(_)));
    assert!(check.rejected[1]
        .1
        .to_string()
        .starts_with("cannot be parsed as X.509: "));
    assert_eq!(
        check.rejected[2],
        (
            3,
            CertRejection::Unparsable("trailing data after certificate".to_string())
        )
    );
}

#[test]
fn garbage_text_is_an_error() {
    assert!(check_roots("", NOW, &[]).is_err());
    assert!(check_roots("hello, I am not PEM", NOW, &[]).is_err());
    assert!(check_roots("-----BEGIN CERTIFICATE-----\nMIIB\n", NOW, &[])
        .unwrap_err()
        .contains("block 1"));
    assert!(check_roots(&wrap("CERTIFICATE", "%%%%"), NOW, &[]).is_err());
}

#[test]
fn display_texts_are_stable_and_hold_no_current_time() {
    let cases = [
        (
            CertRejection::NotCertificate {
                label: "PRIVATE KEY".into(),
            },
            "not a certificate (PEM label PRIVATE KEY)",
        ),
        (
            CertRejection::Unparsable("boom".into()),
            "cannot be parsed as X.509: boom",
        ),
        (
            CertRejection::NotCa,
            "not a CA certificate (BasicConstraints CA:TRUE missing)",
        ),
        (
            CertRejection::Expired {
                not_after: JAN_2_2024,
            },
            "expired on 2024-01-02",
        ),
        (
            CertRejection::Expired {
                not_after: JAN_2_2024 + 86_399,
            },
            "expired on 2024-01-02",
        ),
        (
            CertRejection::NotYetValid {
                not_before: JAN_1_2030,
            },
            "not valid before 2030-01-01",
        ),
        (CertRejection::OwnRoot, "is our own root certificate"),
        (
            CertRejection::Version { version: 4 },
            "X.509 version 4: a root must be version 3",
        ),
        (
            CertRejection::Serial("is negative"),
            "serial number is negative",
        ),
        (
            CertRejection::DuplicateExtension {
                oid: "2.5.29.14".into(),
            },
            "extension 2.5.29.14 appears more than once",
        ),
        (
            CertRejection::PublicKey("point is not on curve P-256".into()),
            "public key: point is not on curve P-256",
        ),
        (
            CertRejection::CriticalExtension {
                oid: "1.2.3".into(),
            },
            "critical extension 1.2.3 is not one Go's X.509 verifier handles",
        ),
        (
            malformed("subjectAltName", "IP address of 5 bytes (4 or 16 expected)"),
            "subjectAltName: IP address of 5 bytes (4 or 16 expected)",
        ),
    ];
    for (rejection, text) in cases {
        assert_eq!(rejection.to_string(), text);
    }
    // The same certificate checked at different times gives the same text.
    let expired = make_cert(
        "Old",
        IsCa::Ca(BasicConstraints::Unconstrained),
        (2020, 1, 1),
        (2024, 1, 2),
    );
    let t1 = check_roots(&expired.pem, NOW, &[]).unwrap().rejected[0]
        .1
        .to_string();
    let t2 = check_roots(&expired.pem, NOW + 10 * 365 * 86_400, &[])
        .unwrap()
        .rejected[0]
        .1
        .to_string();
    assert_eq!(t1, t2);
    // Long hostile labels are cut in the text.
    let long = "A".repeat(1000);
    let text = CertRejection::NotCertificate { label: long }.to_string();
    assert!(text.len() < 120, "{text}");
}

// ---------- Go's parser rules ----------

#[test]
fn der_reader_follows_go_cryptobyte() {
    let read = |bytes: &[u8]| {
        let mut d = Der(bytes);
        d.any().map(|e| (e.tag, e.body.to_vec(), d.0.len()))
    };
    assert_eq!(read(&[0x04, 0x01, 0xaa, 0xff]), Some((0x04, vec![0xaa], 1)));
    let long: Vec<u8> = [&[0x04, 0x81, 0x80][..], &[7u8; 128]].concat();
    assert_eq!(read(&long).map(|(_, b, _)| b.len()), Some(128));
    // Long form for a short length, a leading zero length octet, five length octets,
    // indefinite length, a high tag number, truncation.
    assert_eq!(read(&[0x04, 0x81, 0x01, 0xaa]), None);
    let padded: Vec<u8> = [&[0x04, 0x82, 0x00, 0x80][..], &[7u8; 128]].concat();
    assert_eq!(read(&padded), None);
    assert_eq!(read(&[0x04, 0x85, 0, 0, 0, 0, 1, 0xaa]), None);
    assert_eq!(read(&[0x30, 0x80, 0x00, 0x00]), None);
    assert_eq!(read(&[0x1f, 0x20, 0x01, 0x00]), None);
    assert_eq!(read(&[0x04, 0x02, 0xaa]), None);
    assert_eq!(read(&[0x04]), None);
    // A failed read leaves the reader where it was.
    let mut d = Der(&[0x02, 0x02, 0x00, 0x01]);
    assert_eq!(d.small_int(), None);
    assert_eq!(d.0.len(), 4);
    assert_eq!(d.read(TAG_BOOLEAN), None);
    assert_eq!(d.0.len(), 4);
    assert_eq!(Der(&[0x02, 0x01, 0xff]).small_int(), Some(-1));
    assert_eq!(Der(&[0x02, 0x02, 0x00, 0x80]).small_int(), Some(128));
    assert_eq!(
        Der(&[0x02, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 1]).small_int(),
        None
    );
}

#[test]
fn integers_must_be_minimal() {
    assert!(!minimal_integer(&[]));
    assert!(minimal_integer(&[0x00]));
    assert!(minimal_integer(&[0xff]));
    assert!(minimal_integer(&[0x00, 0x80]));
    assert!(!minimal_integer(&[0x00, 0x7f]));
    assert!(minimal_integer(&[0xff, 0x7f]));
    assert!(!minimal_integer(&[0xff, 0x80]));
}

#[test]
fn oids_as_go_reads_them() {
    assert_eq!(go_oid(&[0x55, 0x1d, 0x0e]), Some(vec![2, 5, 29, 14]));
    assert_eq!(go_oid(&[0x88, 0x37]), Some(vec![2, 999]));
    assert_eq!(go_oid(&[0x27]), Some(vec![0, 39]));
    // 2^31 - 1 is the largest arc; 2^31 and five-octet arcs above it are refused.
    assert_eq!(
        go_oid(&[0x2a, 0x87, 0xff, 0xff, 0xff, 0x7f]),
        Some(vec![1, 2, (1 << 31) - 1])
    );
    assert_eq!(go_oid(&[0x2a, 0x88, 0x80, 0x80, 0x80, 0x00]), None);
    assert_eq!(go_oid(&[0x2a, 0x80, 0x01]), None);
    assert_eq!(go_oid(&[0x2a, 0x81]), None);
    assert_eq!(go_oid(&[]), None);
    assert!(go_policy_oid(&[0x55, 0x1d, 0x20, 0x00]));
    assert!(go_policy_oid(&[
        0x2a, 0x90, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00
    ]));
    assert!(!go_policy_oid(&[0x2a, 0x80, 0x01]));
    assert!(!go_policy_oid(&[0x2a, 0x81]));
    assert_eq!(oid_text(&[2, 5, 29, 14]), "2.5.29.14");
    assert!(oid_text(&[1; 100]).chars().count() <= MAX_LABEL_IN_MESSAGE + 1);
}

#[test]
fn bit_strings_booleans_and_strings() {
    assert_eq!(go_bit_string(&[0x00]), Some((0, &[][..])));
    assert_eq!(go_bit_string(&[0x01, 0x06]), Some((1, &[0x06][..])));
    assert_eq!(go_bit_string(&[0x01, 0x07]), None);
    assert_eq!(go_bit_string(&[0x08, 0x00]), None);
    assert_eq!(go_bit_string(&[0x01]), None);
    assert_eq!(go_bit_string(&[]), None);
    assert_eq!(go_bool(&[0xff]), Some(true));
    assert_eq!(go_bool(&[0x00]), Some(false));
    assert_eq!(go_bool(&[0x01]), None);
    assert_eq!(go_bool(&[0xff, 0xff]), None);
    assert!(go_string(TAG_PRINTABLE_STRING, b"Root CA *.b & c").is_ok());
    assert!(go_string(TAG_PRINTABLE_STRING, b"a@b").is_err());
    assert!(go_string(TAG_UTF8_STRING, "\u{e4}".as_bytes()).is_ok());
    assert!(go_string(TAG_UTF8_STRING, b"\xff").is_err());
    assert!(go_string(TAG_IA5_STRING, b"\x80").is_err());
    assert!(go_string(TAG_BMP_STRING, b"\x00a").is_ok());
    assert!(go_string(TAG_BMP_STRING, b"\x00a\x00").is_err());
    assert!(go_string(TAG_NUMERIC_STRING, b"12 3").is_ok());
    assert!(go_string(TAG_NUMERIC_STRING, b"12a").is_err());
    assert!(go_string(TAG_T61_STRING, b"\xff").is_ok());
    assert!(go_string(0x1a, b"visible").is_err());
}

#[test]
fn times_in_rfc_5280_form_only() {
    let time = |tag: u8, text: &str| {
        let der = [&[tag, text.len() as u8][..], text.as_bytes()].concat();
        go_time(&mut Der(&der), "notBefore").is_ok()
    };
    assert!(time(TAG_UTC_TIME, "200101000000Z"));
    assert!(time(TAG_UTC_TIME, "491231235959Z"));
    assert!(time(TAG_UTC_TIME, "240229000000Z"));
    assert!(!time(TAG_UTC_TIME, "230229000000Z"));
    assert!(!time(TAG_UTC_TIME, "200230000000Z"));
    assert!(!time(TAG_UTC_TIME, "201301000000Z"));
    assert!(!time(TAG_UTC_TIME, "200101240000Z"));
    assert!(!time(TAG_UTC_TIME, "200101006000Z"));
    assert!(!time(TAG_UTC_TIME, "200101000060Z"));
    assert!(!time(TAG_UTC_TIME, "200101000000"));
    assert!(!time(TAG_UTC_TIME, "2001010000Z"));
    assert!(!time(TAG_UTC_TIME, "200101000000+0100"));
    assert!(time(TAG_GENERALIZED_TIME, "20550101000000Z"));
    assert!(!time(TAG_GENERALIZED_TIME, "20550101000000.5Z"));
    assert!(!time(TAG_GENERALIZED_TIME, "20550101000000"));
    assert!(!time(TAG_PRINTABLE_STRING, "200101000000Z"));
}

#[test]
fn names_in_sans_and_constraints() {
    assert!(plain_uri(
        b"spiffe://cluster.local/ns/istio-system/sa/istiod"
    ));
    assert!(plain_uri(b"https://b.test"));
    assert!(!plain_uri(b"spiffe://b test/x"));
    assert!(!plain_uri(b"https://b.test:443/"));
    assert!(!plain_uri(b"https://b.test/?q=1"));
    assert!(!plain_uri(b"https:///path"));
    assert!(!plain_uri(b"urn:uuid:1234"));
    assert!(!plain_uri(b"1http://b.test"));
    assert!(!plain_uri(b"https://b..test"));
    assert!(go_domain(b""));
    assert!(go_domain(b"b.test"));
    assert!(!go_domain(b"b.test."));
    assert!(!go_domain(b"b..test"));
    assert!(!go_domain(b"b test"));
    assert!(go_ip_mask(&[255, 255, 0, 0]));
    assert!(go_ip_mask(&[255, 254, 0, 0]));
    assert!(!go_ip_mask(&[255, 0, 255, 0]));
    assert!(!go_ip_mask(&[255, 0x7f, 0, 0]));
}

#[test]
fn an_odd_root_is_dropped_on_its_own() {
    // rcgen's roots follow every rule (version 3, positive 20-byte serial, P-256 key).
    let good = ca("Good");
    let mut negative = good.der.clone();
    // The serial INTEGER follows the version field `[0] { INTEGER 2 }`; make it negative.
    let version = negative
        .windows(5)
        .position(|w| w == [0xa0, 0x03, 0x02, 0x01, 0x02])
        .unwrap();
    let serial = version + 5;
    assert_eq!(negative[serial], 0x02, "serial INTEGER expected");
    negative[serial + 2] = 0x81;
    let other = ca("Other");
    let bundle = format!(
        "{}{}{}",
        good.pem,
        independent_pem("CERTIFICATE", &negative),
        other.pem
    );
    let check = check_roots(&bundle, NOW, &[]).unwrap();
    let fps: Vec<&str> = check
        .accepted
        .iter()
        .map(|r| r.fingerprint.as_str())
        .collect();
    assert_eq!(fps, vec![sha256_hex(&good.der), sha256_hex(&other.der)]);
    assert_eq!(
        check.rejected,
        vec![(2, CertRejection::Serial("is negative"))]
    );
}

// ---------- certificate_fingerprints ----------

#[test]
fn certificate_fingerprints_is_lenient() {
    let a = ca("Own A");
    let b = ca("Own B");
    let text = format!(
        "{}{}{}{}{}-----BEGIN CERTIFICATE-----\nMIIB\n",
        a.pem,
        wrap("CERTIFICATE", "!!!!"),
        wrap("PRIVATE KEY", FIXTURE_PRIV_B64),
        wrap("CERTIFICATE", &STANDARD.encode(b"not x509")),
        b.pem
    );
    assert_eq!(
        certificate_fingerprints(&text),
        vec![sha256_hex(&a.der), sha256_hex(&b.der)]
    );
    assert!(certificate_fingerprints("").is_empty());
    assert!(certificate_fingerprints("garbage").is_empty());
}

// ---------- Ed25519 ----------

#[test]
fn fixture_public_key_in_both_labels() {
    for label in ["ED25519 PUBLIC KEY", "PUBLIC KEY"] {
        let key = parse_ed25519_public_pem(&wrap(label, FIXTURE_PUB_B64)).unwrap();
        assert_eq!(key, fixture_public_raw(), "{label}");
    }
}

#[test]
fn fixture_private_key_in_both_labels_matches_public() {
    for label in ["ED25519 PRIVATE KEY", "PRIVATE KEY"] {
        let pair = parse_ed25519_private_pem(&wrap(label, FIXTURE_PRIV_B64)).unwrap();
        assert_eq!(pair.public_key().as_ref(), fixture_public_raw(), "{label}");
        let sig = pair.sign(b"message");
        UnparsedPublicKey::new(&ED25519, fixture_public_raw())
            .verify(b"message", sig.as_ref())
            .unwrap();
    }
    // Independently: ring reads the same v1 document to the same key.
    let direct = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&fixture_private_der()).unwrap();
    assert_eq!(direct.public_key().as_ref(), fixture_public_raw());
}

#[test]
fn private_key_pkcs8_v2_accepted() {
    let rng = SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let expected = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let pem = independent_pem("PRIVATE KEY", doc.as_ref());
    let pair = parse_ed25519_private_pem(&pem).unwrap();
    assert_eq!(pair.public_key().as_ref(), expected.public_key().as_ref());
}

#[test]
fn public_key_errors() {
    assert_eq!(parse_ed25519_public_pem("").unwrap_err(), "no PEM block");
    assert_eq!(
        parse_ed25519_public_pem("nothing").unwrap_err(),
        "no PEM block"
    );

    let ec = KeyPair::generate().unwrap();
    let ec_pem = independent_pem("PUBLIC KEY", &ec.subject_public_key_info());
    let e = parse_ed25519_public_pem(&ec_pem).unwrap_err();
    assert_eq!(e, "not an Ed25519 key: algorithm OID 1.2.840.10045.2.1");

    let mut short = vec![
        0x30, 0x29, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x20, 0x00,
    ];
    short.extend_from_slice(&[1u8; 31]);
    let e = parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &short)).unwrap_err();
    assert!(e.contains("31 bytes"), "{e}");

    let mut with_params = vec![
        0x30, 0x2c, 0x30, 0x07, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x05, 0x00, 0x03, 0x21, 0x00,
    ];
    with_params.extend_from_slice(&fixture_public_raw());
    let e = parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &with_params)).unwrap_err();
    assert!(e.contains("parameters"), "{e}");

    let mut trailing = STANDARD.decode(FIXTURE_PUB_B64).unwrap();
    trailing.push(0);
    assert!(parse_ed25519_public_pem(&independent_pem("PUBLIC KEY", &trailing)).is_err());

    let garbage = independent_pem("PUBLIC KEY", b"garbage");
    assert!(parse_ed25519_public_pem(&garbage).is_err());

    let two = format!(
        "{}{}",
        wrap("PUBLIC KEY", FIXTURE_PUB_B64),
        wrap("PUBLIC KEY", FIXTURE_PUB_B64)
    );
    assert!(parse_ed25519_public_pem(&two)
        .unwrap_err()
        .contains("one PEM block"));
}

#[test]
fn private_key_errors() {
    assert_eq!(parse_ed25519_private_pem("").unwrap_err(), "no PEM block");
    let e = parse_ed25519_private_pem(&wrap("PRIVATE KEY", FIXTURE_PUB_B64)).unwrap_err();
    assert!(e.starts_with("not an Ed25519 PKCS#8 private key"), "{e}");
    let ec = KeyPair::generate().unwrap();
    let ec_pem = independent_pem("PRIVATE KEY", ec.serialized_der());
    assert!(parse_ed25519_private_pem(&ec_pem).is_err());
    assert!(parse_ed25519_private_pem("-----BEGIN PRIVATE KEY-----\nabc").is_err());
}

#[test]
fn generated_keys_round_trip() {
    let (private_pem, public_pem) = generate_ed25519_pem().unwrap();
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(private_pem.ends_with("-----END PRIVATE KEY-----\n"));
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert!(public_pem.ends_with("-----END PUBLIC KEY-----\n"));

    // The SPKI is the RFC 8410 encoding: fixed prefix + 32 key bytes.
    let spki_b64: String = public_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let spki = STANDARD.decode(spki_b64).unwrap();
    assert_eq!(spki.len(), 44);
    assert_eq!(
        spki[..12],
        [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
    );

    let pair = parse_ed25519_private_pem(&private_pem).unwrap();
    let public = parse_ed25519_public_pem(&public_pem).unwrap();
    assert_eq!(pair.public_key().as_ref(), public);
    assert_eq!(spki[12..], public);
    let sig = pair.sign(b"hello");
    UnparsedPublicKey::new(&ED25519, public)
        .verify(b"hello", sig.as_ref())
        .unwrap();

    // PKCS#8 v1 (RFC 8410 §7), the form Go and OpenSSL write; OpenSSL must read it back.
    let pkcs8_b64: String = private_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let pkcs8 = STANDARD.decode(pkcs8_b64).unwrap();
    assert_eq!(pkcs8.len(), 48);
    assert_eq!(
        pkcs8[..16],
        [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20
        ]
    );

    let (other, _) = generate_ed25519_pem().unwrap();
    assert_ne!(other, private_pem);
}
