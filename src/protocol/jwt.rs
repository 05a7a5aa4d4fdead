//! Compact JWS with EdDSA (Ed25519) and the claim set Deckhouse's istio federation uses to
//! authenticate requests for private metadata.
//!
//! Only what Deckhouse needs is implemented: one algorithm, one header, one claim set. The
//! verification order and the error texts follow Deckhouse's metadata exporter, so a peer sees
//! the same 401 bodies whichever implementation answers it.

use super::secret::SCOPE_PRIVATE_FEDERATION;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};

/// The only JWS header we emit. go-jose emits exactly these bytes for an EdDSA signature
/// without extra headers.
const HEADER_JSON: &[u8] = br#"{"alg":"EdDSA"}"#;

/// Longest `Authorization` value we look at; real tokens are ~350 bytes. Caps the work an
/// unauthenticated caller can cause.
const MAX_HEADER_VALUE: usize = 8 * 1024;

/// Issuer Deckhouse puts into federation tokens.
const ISSUER: &str = "d8-istio";

/// Lifetime of the tokens we sign, seconds (Deckhouse uses one minute too).
const TOKEN_TTL: i64 = 60;

/// base64url decoder accepting both unpadded (RFC 7515) and padded parts.
const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Claims Deckhouse uses for metadata requests. Serialized with keys in alphabetical order
/// exactly as Go's map marshalling does: {"aud":…,"exp":…,"iss":…,"nbf":…,"scope":…,"sub":…}
/// (exp/nbf are JSON integers, unix seconds). The field order below IS the wire order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// UUID of the destination cluster (the one that verifies).
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issuer, "d8-istio"; not checked by verifiers.
    pub iss: String,
    /// Not-before, unix seconds; not checked by verifiers.
    pub nbf: i64,
    /// What the token grants, e.g. "private-federation".
    pub scope: String,
    /// UUID of the source cluster (the one that signs); selects the verification key.
    pub sub: String,
}

impl Claims {
    /// The claim set for a private federation request: iss "d8-istio", scope
    /// "private-federation", nbf now, exp now+60, aud the peer, sub ourselves.
    pub fn private_federation(own_uuid: &str, peer_uuid: &str, now: i64) -> Claims {
        Claims {
            aud: peer_uuid.to_string(),
            exp: now.saturating_add(TOKEN_TTL),
            iss: ISSUER.to_string(),
            nbf: now,
            scope: SCOPE_PRIVATE_FEDERATION.to_string(),
            sub: own_uuid.to_string(),
        }
    }
}

/// The longest a token may still be valid when it arrives: Deckhouse's tokens live 60 s; an
/// hour leaves room for clock skew and stays compatible, while a token leaked from a log or a
/// proxy cannot be replayed for years (`exp` 2^62 was accepted before).
pub const MAX_TOKEN_LIFETIME: i64 = 3600;

/// Signs as compact JWS: base64url-no-pad(`{"alg":"EdDSA"}`) + "." + base64url-no-pad(claims
/// JSON) + "." + base64url-no-pad(Ed25519 signature over the first two parts joined by ".").
pub fn sign(key: &Ed25519KeyPair, claims: &Claims) -> String {
    // Serialising a struct of Strings and i64 into memory cannot fail. Should it ever, an empty
    // payload (which every verifier refuses as malformed) is a safer outcome than a panic.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let mut token = URL_SAFE_NO_PAD.encode(HEADER_JSON);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.as_ref()));
    token
}

/// Why a token was refused. `Display` texts follow Deckhouse's exporter (its 401 body is
/// "Authentication error: <text>"). Some variants quote token content (bounded by the 8 KiB
/// cap but attacker-chosen): escape before writing them to logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// The header does not start with "Bearer ".
    MissingBearer,
    /// The token is not a well-formed compact JWS with a JSON claim set.
    Malformed(String),
    /// The JWS header names an algorithm other than EdDSA (including "none").
    WrongAlgorithm(String),
    /// The token is meant for another cluster.
    WrongAudience {
        /// Our UUID.
        expected: String,
        /// The token's aud ("" when absent).
        got: String,
    },
    /// The token grants another scope.
    WrongScope {
        /// The scope the endpoint needs.
        expected: String,
        /// The token's scope ("" when absent).
        got: String,
    },
    /// exp is before now.
    Expired,
    /// exp is more than [`MAX_TOKEN_LIFETIME`] seconds after now.
    LifetimeTooLong,
    /// No public key is known for the token's sub ("" when absent).
    UnknownSubject(String),
    /// The signature does not verify with the key known for sub.
    BadSignature,
}

impl AuthError {
    /// A stable, low-cardinality label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingBearer => "missing_bearer",
            AuthError::Malformed(_) => "malformed",
            AuthError::WrongAlgorithm(_) => "wrong_algorithm",
            AuthError::WrongAudience { .. } => "wrong_audience",
            AuthError::WrongScope { .. } => "wrong_scope",
            AuthError::Expired => "expired",
            AuthError::LifetimeTooLong => "lifetime_too_long",
            AuthError::UnknownSubject(_) => "unknown_subject",
            AuthError::BadSignature => "bad_signature",
        }
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::MissingBearer => f.write_str("Bearer authorization required"),
            AuthError::Malformed(detail) => write!(f, "malformed JWT: {detail}"),
            AuthError::WrongAlgorithm(alg) => {
                write!(f, "unsupported JWT algorithm {alg}, expected EdDSA")
            }
            AuthError::WrongAudience { expected, got } => write!(
                f,
                "JWT is signed for wrong destination cluster. Expected: {expected}, Got: {got}"
            ),
            AuthError::WrongScope { expected, got } => write!(
                f,
                "JWT is signed for wrong scope. Expected: {expected}, Got: {got}"
            ),
            AuthError::Expired => f.write_str("JWT token expired"),
            AuthError::LifetimeTooLong => write!(
                f,
                "JWT token expires more than {MAX_TOKEN_LIFETIME} s from now"
            ),
            AuthError::UnknownSubject(sub) => {
                write!(f, "JWT is signed for unknown source cluster {sub}")
            }
            AuthError::BadSignature => f.write_str("cannot verify JWT token with known public key"),
        }
    }
}

impl std::error::Error for AuthError {}

/// The payload as received, before any check. Absent string claims read as "" (Go's zero value,
/// which is what Deckhouse compares). iss and nbf are not checked, so any JSON type is tolerated
/// there; exp must be a JSON integer, like Deckhouse's int64 field.
#[derive(serde::Deserialize)]
struct RawClaims {
    aud: Option<String>,
    exp: Option<i64>,
    iss: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    scope: Option<String>,
    sub: Option<String>,
}

fn malformed(detail: impl Into<String>) -> AuthError {
    AuthError::Malformed(detail.into())
}

/// Verifies an `Authorization` header value exactly in Deckhouse's order: "Bearer " prefix;
/// three non-empty dot-separated base64url parts (padded parts tolerated); header JSON with
/// "alg":"EdDSA" and no "crit"; payload parsed WITHOUT verification; aud == `own_uuid`;
/// scope == `scope`; exp >= `now` (missing exp is Malformed); sub known to `lookup`; finally the
/// Ed25519 signature over the received "<header>.<payload>" bytes.
///
/// nbf and iss are NOT checked (Deckhouse does not check them); in the returned [`Claims`] an
/// absent or non-integer nbf reads as 0 and an absent or non-string iss as "". Absent aud,
/// scope or sub read as "" and so fail their checks (callers must not pass an empty
/// `own_uuid`, and `lookup("")` should return None). Values longer than 8 KiB are refused.
/// Never panics.
pub fn verify_bearer(
    header_value: &str,
    own_uuid: &str,
    scope: &str,
    now: i64,
    lookup: impl Fn(&str) -> Option<[u8; 32]>,
) -> Result<Claims, AuthError> {
    if header_value.len() > MAX_HEADER_VALUE {
        return Err(malformed("token too long"));
    }
    let token = header_value
        .strip_prefix("Bearer ")
        .ok_or(AuthError::MissingBearer)?
        .trim_matches(|c: char| c.is_ascii_whitespace());

    let parts = token.split('.').count();
    if parts != 3 {
        return Err(malformed(format!(
            "expected 3 dot-separated parts, found {parts}"
        )));
    }
    let (signing_input, sig_b64) = token
        .rsplit_once('.')
        .ok_or_else(|| malformed("expected 3 dot-separated parts"))?;
    let (header_b64, payload_b64) = signing_input
        .split_once('.')
        .ok_or_else(|| malformed("expected 3 dot-separated parts"))?;
    if header_b64.is_empty() || payload_b64.is_empty() || sig_b64.is_empty() {
        return Err(malformed("empty part"));
    }

    let header = decode_part(header_b64, "header")?;
    let payload = decode_part(payload_b64, "payload")?;
    let signature = decode_part(sig_b64, "signature")?;
    check_header(&header)?;
    let raw = parse_payload(&payload)?;

    let aud = raw.aud.unwrap_or_default();
    if aud != own_uuid {
        return Err(AuthError::WrongAudience {
            expected: own_uuid.to_string(),
            got: aud,
        });
    }
    let token_scope = raw.scope.unwrap_or_default();
    if token_scope != scope {
        return Err(AuthError::WrongScope {
            expected: scope.to_string(),
            got: token_scope,
        });
    }
    let exp = raw.exp.ok_or_else(|| malformed("missing exp claim"))?;
    if exp < now {
        return Err(AuthError::Expired);
    }
    if exp.saturating_sub(now) > MAX_TOKEN_LIFETIME {
        return Err(AuthError::LifetimeTooLong);
    }
    let sub = raw.sub.unwrap_or_default();
    let Some(public_key) = lookup(&sub) else {
        return Err(AuthError::UnknownSubject(sub));
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| AuthError::BadSignature)?;

    Ok(Claims {
        aud,
        exp,
        iss: match raw.iss {
            Some(serde_json::Value::String(s)) => s,
            _ => String::new(),
        },
        nbf: raw.nbf.and_then(|v| v.as_i64()).unwrap_or(0),
        scope: token_scope,
        sub,
    })
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, AuthError> {
    B64URL_LENIENT
        .decode(part)
        .map_err(|e| malformed(format!("{what} is not base64url: {e}")))
}

/// Accepts only a JSON object header with "alg":"EdDSA". A "crit" header is refused because
/// RFC 7515 requires refusing critical extensions one does not implement (we implement none).
fn check_header(header: &[u8]) -> Result<(), AuthError> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header)
        .map_err(|e| malformed(format!("header is not a JSON object: {e}")))?;
    match map.get("alg") {
        Some(serde_json::Value::String(alg)) if alg == "EdDSA" => {}
        Some(serde_json::Value::String(alg)) => return Err(AuthError::WrongAlgorithm(alg.clone())),
        Some(_) => return Err(malformed("header alg is not a string")),
        None => return Err(malformed("header has no alg")),
    }
    if map.contains_key("crit") {
        return Err(malformed("unsupported crit header"));
    }
    Ok(())
}

fn parse_payload(payload: &[u8]) -> Result<RawClaims, AuthError> {
    // serde would also read a JSON array into a struct; a claim set must be an object.
    let first = payload.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(malformed("payload is not a JSON object"));
    }
    serde_json::from_slice(payload).map_err(|e| malformed(format!("payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair as _;

    /// Deckhouse test fixture key pair.
    const FIXTURE_PRIV_B64: &str =
        "MC4CAQAwBQYDK2VwBCIEIMgNk3rr2AmIIlkKTAM9fG6+hMKvwF+pMAT3ID3M0OFK";
    const FIXTURE_PUB_B64: &str = "MCowBQYDK2VwAyEAKWjdKDeIIT4xESCMhbol662vNMpq4DxFct8GvJ500Xs=";

    const OWN: &str = "11111111-1111-1111-1111-111111111111";
    const PEER: &str = "22222222-2222-2222-2222-222222222222";
    const NOW: i64 = 1_748_736_000;
    const SCOPE: &str = "private-federation";

    fn fixture_key() -> Ed25519KeyPair {
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&STANDARD.decode(FIXTURE_PRIV_B64).unwrap())
            .unwrap()
    }

    fn fixture_pub() -> [u8; 32] {
        STANDARD.decode(FIXTURE_PUB_B64).unwrap()[12..]
            .try_into()
            .unwrap()
    }

    /// Looks up the fixture key for the cluster `OWN` (the signer in these tests).
    fn lookup(sub: &str) -> Option<[u8; 32]> {
        (sub == OWN).then(fixture_pub)
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Builds a compact JWS from raw parts with ring, without `sign`.
    fn raw_token(key: &Ed25519KeyPair, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let sig = key.sign(input.as_bytes());
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn payload_json(aud: &str, exp: i64, scope: &str, sub: &str) -> String {
        format!(
            r#"{{"aud":"{aud}","exp":{exp},"iss":"d8-istio","nbf":{NOW},"scope":"{scope}","sub":"{sub}"}}"#
        )
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    /// A token signed by OWN for us-as-PEER; verified with own_uuid = PEER.
    fn verify(header_value: &str) -> Result<Claims, AuthError> {
        verify_bearer(header_value, PEER, SCOPE, NOW, lookup)
    }

    #[test]
    fn private_federation_claims() {
        assert_eq!(
            Claims::private_federation(OWN, PEER, NOW),
            Claims {
                aud: PEER.into(),
                exp: NOW + 60,
                iss: "d8-istio".into(),
                nbf: NOW,
                scope: "private-federation".into(),
                sub: OWN.into(),
            }
        );
    }

    #[test]
    fn sign_layout_header_and_key_order() {
        let claims = Claims::private_federation(OWN, PEER, NOW);
        let token = sign(&fixture_key(), &claims);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJFZERTQSJ9");
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            payload,
            format!(
                r#"{{"aud":"{PEER}","exp":{},"iss":"d8-istio","nbf":{NOW},"scope":"private-federation","sub":"{OWN}"}}"#,
                NOW + 60
            )
        );
        assert!(!token.contains('='));
    }

    #[test]
    fn sign_equals_independent_construction() {
        // Ed25519 is deterministic, so the whole token can be predicted with raw ring.
        let key = fixture_key();
        let claims = Claims::private_federation(OWN, PEER, NOW);
        let expected = raw_token(
            &key,
            r#"{"alg":"EdDSA"}"#,
            &payload_json(PEER, NOW + 60, SCOPE, OWN),
        );
        assert_eq!(sign(&key, &claims), expected);

        // And sign's signature verifies with ring directly against the fixture public key.
        let token = sign(&key, &claims);
        let (input, sig) = token.rsplit_once('.').unwrap();
        UnparsedPublicKey::new(&ED25519, fixture_pub())
            .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
    }

    #[test]
    fn round_trip() {
        let claims = Claims::private_federation(OWN, PEER, NOW);
        let token = sign(&fixture_key(), &claims);
        assert_eq!(verify(&bearer(&token)), Ok(claims));
    }

    #[test]
    fn verifies_independently_built_token() {
        // Different key order, extra claims and whitespace: only the received bytes matter.
        let payload = format!(
            r#"{{ "sub":"{OWN}", "scope":"{SCOPE}", "iat":{NOW}, "aud":"{PEER}", "exp":{} }}"#,
            NOW + 30
        );
        let token = raw_token(&fixture_key(), r#"{"typ":"JWT","alg":"EdDSA"}"#, &payload);
        let claims = verify(&bearer(&token)).unwrap();
        assert_eq!(
            claims,
            Claims {
                aud: PEER.into(),
                exp: NOW + 30,
                iss: String::new(),
                nbf: 0,
                scope: SCOPE.into(),
                sub: OWN.into(),
            }
        );
    }

    #[test]
    fn padded_base64url_tolerated() {
        let header = URL_SAFE.encode(br#"{"alg":"EdDSA"}"#);
        let payload = URL_SAFE.encode(payload_json(PEER, NOW + 60, SCOPE, OWN).as_bytes());
        let input = format!("{header}.{payload}");
        let sig = fixture_key().sign(input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE.encode(sig.as_ref()));
        assert!(token.ends_with("=="));
        assert!(verify(&bearer(&token)).is_ok());
    }

    #[test]
    fn missing_bearer() {
        let token = sign(&fixture_key(), &Claims::private_federation(OWN, PEER, NOW));
        for value in [
            token.clone(),
            format!("bearer {token}"),
            format!("Basic {token}"),
            String::new(),
        ] {
            assert_eq!(verify(&value), Err(AuthError::MissingBearer), "{value}");
        }
    }

    #[test]
    fn wrong_part_counts_and_empty_parts() {
        let token = sign(&fixture_key(), &Claims::private_federation(OWN, PEER, NOW));
        let parts: Vec<&str> = token.split('.').collect();
        let cases = [
            format!("{}.{}", parts[0], parts[1]),
            format!("{token}.{}", parts[2]),
            format!("{}..{}", parts[0], parts[2]),
            format!(".{}.{}", parts[1], parts[2]),
            format!("{}.{}.", parts[0], parts[1]),
            String::new(),
            "..".to_string(),
            "abc".to_string(),
        ];
        for token in cases {
            let err = verify(&bearer(&token)).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{token}: {err:?}");
            assert_eq!(err.reason(), "malformed");
        }
    }

    #[test]
    fn bad_base64() {
        let token = sign(&fixture_key(), &Claims::private_federation(OWN, PEER, NOW));
        let parts: Vec<&str> = token.split('.').collect();
        for token in [
            format!("e*J.{}.{}", parts[1], parts[2]),
            format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}+/", parts[0], parts[1], parts[2]),
            format!("{}.{}.ä", parts[0], parts[1]),
        ] {
            let err = verify(&bearer(&token)).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{token}: {err:?}");
        }
    }

    #[test]
    fn wrong_algorithms() {
        let payload = payload_json(PEER, NOW + 60, SCOPE, OWN);
        let key = fixture_key();
        // alg none with an empty signature is refused as malformed already (empty part).
        let unsigned = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(payload.as_bytes()));
        assert!(matches!(
            verify(&bearer(&unsigned)),
            Err(AuthError::Malformed(_))
        ));
        for alg in ["none", "HS256", "ES256", "eddsa"] {
            let token = raw_token(&key, &format!(r#"{{"alg":"{alg}"}}"#), &payload);
            let err = verify(&bearer(&token)).unwrap_err();
            assert_eq!(err, AuthError::WrongAlgorithm(alg.to_string()));
            assert_eq!(err.reason(), "wrong_algorithm");
            assert_eq!(
                err.to_string(),
                format!("unsupported JWT algorithm {alg}, expected EdDSA")
            );
        }
        for header in [
            r#"{}"#,
            r#"{"alg":1}"#,
            r#"["EdDSA"]"#,
            "not json",
            r#"{"alg":"EdDSA","crit":["b64"]}"#,
        ] {
            let token = raw_token(&key, header, &payload);
            assert!(
                matches!(verify(&bearer(&token)), Err(AuthError::Malformed(_))),
                "{header}"
            );
        }
    }

    #[test]
    fn malformed_payloads() {
        let key = fixture_key();
        let h = r#"{"alg":"EdDSA"}"#;
        for payload in [
            "not json".to_string(),
            format!(r#"["{PEER}",{NOW},"d8-istio",{NOW},"{SCOPE}","{OWN}"]"#),
            format!(r#"{{"aud":"{PEER}","scope":"{SCOPE}","sub":"{OWN}"}}"#),
            format!(r#"{{"aud":"{PEER}","exp":"{NOW}","scope":"{SCOPE}","sub":"{OWN}"}}"#),
            format!(r#"{{"aud":"{PEER}","exp":1.5e9,"scope":"{SCOPE}","sub":"{OWN}"}}"#),
            format!(r#"{{"aud":5,"exp":{NOW},"scope":"{SCOPE}","sub":"{OWN}"}}"#),
        ] {
            let token = raw_token(&key, h, &payload);
            let err = verify(&bearer(&token)).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{payload}: {err:?}");
        }
        let no_exp = raw_token(
            &key,
            h,
            &format!(r#"{{"aud":"{PEER}","scope":"{SCOPE}","sub":"{OWN}"}}"#),
        );
        assert_eq!(
            verify(&bearer(&no_exp)),
            Err(AuthError::Malformed("missing exp claim".into()))
        );
    }

    #[test]
    fn wrong_audience_and_scope() {
        let key = fixture_key();
        let token = sign(&key, &Claims::private_federation(OWN, "someone-else", NOW));
        let err = verify(&bearer(&token)).unwrap_err();
        assert_eq!(
            err,
            AuthError::WrongAudience {
                expected: PEER.into(),
                got: "someone-else".into()
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "JWT is signed for wrong destination cluster. Expected: {PEER}, Got: someone-else"
            )
        );
        assert_eq!(err.reason(), "wrong_audience");

        let token = raw_token(
            &key,
            r#"{"alg":"EdDSA"}"#,
            &payload_json(PEER, NOW + 60, "public", OWN),
        );
        let err = verify(&bearer(&token)).unwrap_err();
        assert_eq!(
            err,
            AuthError::WrongScope {
                expected: SCOPE.into(),
                got: "public".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "JWT is signed for wrong scope. Expected: private-federation, Got: public"
        );
        assert_eq!(err.reason(), "wrong_scope");
    }

    #[test]
    fn expiry() {
        let key = fixture_key();
        let h = r#"{"alg":"EdDSA"}"#;
        let past = raw_token(&key, h, &payload_json(PEER, NOW - 1, SCOPE, OWN));
        let err = verify(&bearer(&past)).unwrap_err();
        assert_eq!(err, AuthError::Expired);
        assert_eq!(err.to_string(), "JWT token expired");
        assert_eq!(err.reason(), "expired");

        let at_now = raw_token(&key, h, &payload_json(PEER, NOW, SCOPE, OWN));
        assert_eq!(verify(&bearer(&at_now)).unwrap().exp, NOW);
    }

    #[test]
    fn nbf_and_iss_not_checked() {
        let key = fixture_key();
        let payload = format!(
            r#"{{"aud":"{PEER}","exp":{},"iss":"someone","nbf":{},"scope":"{SCOPE}","sub":"{OWN}"}}"#,
            NOW + 60,
            NOW + 10 * 365 * 86_400
        );
        let token = raw_token(&key, r#"{"alg":"EdDSA"}"#, &payload);
        let claims = verify(&bearer(&token)).unwrap();
        assert_eq!(claims.nbf, NOW + 10 * 365 * 86_400);
        assert_eq!(claims.iss, "someone");
    }

    #[test]
    fn unknown_subject() {
        let token = sign(
            &fixture_key(),
            &Claims::private_federation("stranger", PEER, NOW),
        );
        let err = verify(&bearer(&token)).unwrap_err();
        assert_eq!(err, AuthError::UnknownSubject("stranger".into()));
        assert_eq!(
            err.to_string(),
            "JWT is signed for unknown source cluster stranger"
        );
        assert_eq!(err.reason(), "unknown_subject");
    }

    #[test]
    fn signature_by_other_key() {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let other = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        assert_ne!(other.public_key().as_ref(), fixture_pub());
        let token = sign(&other, &Claims::private_federation(OWN, PEER, NOW));
        let err = verify(&bearer(&token)).unwrap_err();
        assert_eq!(err, AuthError::BadSignature);
        assert_eq!(
            err.to_string(),
            "cannot verify JWT token with known public key"
        );
        assert_eq!(err.reason(), "bad_signature");
    }

    #[test]
    fn tampered_payload_and_signature() {
        let token = sign(&fixture_key(), &Claims::private_federation(OWN, PEER, NOW));
        let parts: Vec<&str> = token.split('.').collect();
        let longer = b64(payload_json(PEER, NOW + 3600, SCOPE, OWN).as_bytes());
        let tampered = format!("{}.{longer}.{}", parts[0], parts[2]);
        assert_eq!(verify(&bearer(&tampered)), Err(AuthError::BadSignature));

        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        assert_eq!(verify(&bearer(&flipped)), Err(AuthError::BadSignature));

        let short = format!("{}.{}.{}", parts[0], parts[1], b64(&sig[..32]));
        assert_eq!(verify(&bearer(&short)), Err(AuthError::BadSignature));

        // Same claims, padded re-encoding of the header part: the signed bytes differ.
        let repadded = format!(
            "{}.{}.{}",
            URL_SAFE.encode(br#"{"alg":"EdDSA"} "#),
            parts[1],
            parts[2]
        );
        assert_eq!(verify(&bearer(&repadded)), Err(AuthError::BadSignature));
    }

    #[test]
    fn too_long() {
        let token = sign(&fixture_key(), &Claims::private_federation(OWN, PEER, NOW));
        let huge = format!("Bearer {token}{}", "A".repeat(10 * 1024));
        let err = verify(&huge).unwrap_err();
        assert_eq!(err, AuthError::Malformed("token too long".into()));
        assert_eq!(err.to_string(), "malformed JWT: token too long");
    }

    #[test]
    fn surrounding_whitespace_tolerated() {
        let claims = Claims::private_federation(OWN, PEER, NOW);
        let token = sign(&fixture_key(), &claims);
        assert_eq!(verify(&format!("Bearer  {token} \r\n")), Ok(claims));
    }

    #[test]
    fn display_texts() {
        assert_eq!(
            AuthError::MissingBearer.to_string(),
            "Bearer authorization required"
        );
        assert_eq!(AuthError::MissingBearer.reason(), "missing_bearer");
        assert_eq!(
            AuthError::Malformed("x".into()).to_string(),
            "malformed JWT: x"
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let inputs = [
            "Bearer ",
            "Bearer .",
            "Bearer ..",
            "Bearer ...",
            "Bearer ä.ö.ü",
            "Bearer 🦀.🦀.🦀",
            "Bearer e30.e30.e30",
            "Bearer eyJhbGciOiJFZERTQSJ9.e30.AAAA",
            "Bearer eyJhbGciOiJFZERTQSJ9.bnVsbA.AAAA",
            "Bearer eyJhbGciOiJFZERTQSJ9.IiI.AAAA",
            "Bearer \u{0}.\u{0}.\u{0}",
        ];
        for input in inputs {
            assert!(verify(input).is_err(), "{input}");
        }
        // Every byte-length prefix of a valid header value that is valid UTF-8.
        let full = bearer(&sign(
            &fixture_key(),
            &Claims::private_federation(OWN, PEER, NOW),
        ));
        for i in 0..full.len() {
            if let Some(prefix) = full.get(..i) {
                assert!(verify(prefix).is_err(), "{prefix}");
            }
        }
        // An empty object payload fails on aud ("" is not our UUID).
        let token = raw_token(&fixture_key(), r#"{"alg":"EdDSA"}"#, "{}");
        assert_eq!(
            verify(&bearer(&token)),
            Err(AuthError::WrongAudience {
                expected: PEER.into(),
                got: String::new()
            })
        );
    }
}
