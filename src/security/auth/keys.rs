//! Signature algorithms and verification keys: the JWS algorithm names accepted, HMAC secrets,
//! and public keys read from PEM (SPKI, PKCS#1 RSA or an X.509 certificate) or built from JWK
//! components. Keys are parsed once, here, so a verification never re-parses key material.

use std::fmt;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A JWS signature algorithm rampart verifies. `none` is deliberately not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub(crate) const ALL: [Alg; 12] = [
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The algorithm named exactly (case-sensitive, as RFC 7518 spells it) by `name`.
    pub(crate) fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|alg| alg.name() == name)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub(crate) fn is_symmetric(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// HMAC algorithm and the minimum secret length (RFC 7518 §3.2: at least the hash size).
    pub(crate) fn hmac(self) -> Option<(hmac::Algorithm, usize)> {
        match self {
            Alg::HS256 => Some((hmac::HMAC_SHA256, 32)),
            Alg::HS384 => Some((hmac::HMAC_SHA384, 48)),
            Alg::HS512 => Some((hmac::HMAC_SHA512, 64)),
            _ => None,
        }
    }

    fn verification(self) -> Option<&'static dyn VerificationAlgorithm> {
        Some(match self {
            Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Alg::EdDSA => &signature::ED25519,
            Alg::HS256 | Alg::HS384 | Alg::HS512 => return None,
        })
    }

    /// Whether a public key of `kind` can verify this algorithm.
    pub(crate) fn fits(self, kind: KeyKind) -> bool {
        match kind {
            KeyKind::Rsa => matches!(
                self,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512
            ),
            KeyKind::EcP256 => self == Alg::ES256,
            KeyKind::EcP384 => self == Alg::ES384,
            KeyKind::Ed25519 => self == Alg::EdDSA,
        }
    }
}

/// The kind of a public key, as read from its SPKI algorithm identifier or JWK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::EcP256 => "an EC P-256 key",
            KeyKind::EcP384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        })
    }
}

/// A key ready to verify one algorithm.
pub(crate) enum VerifyKey {
    /// Boxed: an HMAC key holds its precomputed inner and outer states (over 1 KiB).
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey),
}

impl VerifyKey {
    /// Checks `signature` over `message`; constant-time for HMAC.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            VerifyKey::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            VerifyKey::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyKey::Hmac(_) => "VerifyKey::Hmac([redacted])",
            VerifyKey::Public(_) => "VerifyKey::Public(..)",
        })
    }
}

/// One verification key per algorithm, for a key that may serve several (an RSA key verifies
/// RS256 and PS256 alike).
#[derive(Debug, Default)]
pub(crate) struct KeyRing(Vec<(Alg, VerifyKey)>);

impl KeyRing {
    pub(crate) fn get(&self, alg: Alg) -> Option<&VerifyKey> {
        self.0.iter().find(|(a, _)| *a == alg).map(|(_, key)| key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// HMAC keys for every symmetric algorithm in `algs`.
    pub(crate) fn hmac(secret: &[u8], algs: &[Alg]) -> KeyRing {
        let mut ring = KeyRing::default();
        for &alg in algs {
            if let Some((algorithm, _)) = alg.hmac()
                && ring.get(alg).is_none()
            {
                ring.0.push((
                    alg,
                    VerifyKey::Hmac(Box::new(hmac::Key::new(algorithm, secret))),
                ));
            }
        }
        ring
    }

    /// Parsed public keys for every algorithm in `algs` that a key of `kind` fits.
    /// `der` is SPKI DER, PKCS#1 `RSAPublicKey` DER, an uncompressed EC point or a raw Ed25519 key.
    pub(crate) fn public(kind: KeyKind, der: &[u8], algs: &[Alg]) -> Result<KeyRing, String> {
        if kind == KeyKind::Rsa {
            // The verifier refuses other sizes at verification time; say so up front instead.
            match rsa_modulus_bits(der) {
                Some(bits) if (2048..=8192).contains(&bits) => {}
                Some(bits) => {
                    return Err(format!(
                        "the RSA key has {bits} bits: expected 2048 to 8192"
                    ));
                }
                None => return Err("the RSA key is not valid DER".to_owned()),
            }
        }
        let mut ring = KeyRing::default();
        for &alg in algs {
            let Some(verification) = alg.verification() else {
                continue;
            };
            if !alg.fits(kind) || ring.get(alg).is_some() {
                continue;
            }
            let parsed = ParsedPublicKey::new(verification, der).map_err(|error| {
                format!("{kind} that cannot be used for {}: {error}", alg.name())
            })?;
            ring.0.push((alg, VerifyKey::Public(parsed)));
        }
        Ok(ring)
    }
}

/// A public key read from a PEM file: its kind and the DER the verifier parses.
#[derive(Debug)]
pub(crate) struct PemPublicKey {
    pub(crate) kind: KeyKind,
    pub(crate) der: Vec<u8>,
}

/// Reads the first `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE` block of a PEM text.
/// Private keys are refused with a message saying so (a public key is all a verifier needs).
pub(crate) fn parse_public_pem(text: &str) -> Result<PemPublicKey, String> {
    let mut saw_private = false;
    for (label, body) in pem_blocks(text) {
        let der = STANDARD
            .decode(body)
            .map_err(|_| format!("the `{label}` block is not valid base64"))?;
        match label {
            "PUBLIC KEY" => {
                let kind = spki_kind(&der)?;
                return Ok(PemPublicKey { kind, der });
            }
            "RSA PUBLIC KEY" => {
                return Ok(PemPublicKey {
                    kind: KeyKind::Rsa,
                    der,
                });
            }
            "CERTIFICATE" => {
                let spki = certificate_spki(&der)
                    .ok_or_else(|| "the certificate is not valid DER X.509".to_owned())?;
                let kind = spki_kind(spki)?;
                return Ok(PemPublicKey {
                    kind,
                    der: spki.to_vec(),
                });
            }
            label if label.contains("PRIVATE KEY") => saw_private = true,
            _ => {}
        }
    }
    Err(if saw_private {
        "expected a public key or certificate, found a private key (give the verifier only the public key)".to_owned()
    } else {
        "expected a PEM `PUBLIC KEY`, `RSA PUBLIC KEY` or `CERTIFICATE` block".to_owned()
    })
}

/// `(label, base64 body without whitespace)` of each PEM block.
fn pem_blocks(text: &str) -> Vec<(&str, String)> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(body_end) = body_start.find(&end_marker) else {
            break;
        };
        let body: String = body_start[..body_end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        blocks.push((label, body));
        rest = &body_start[body_end + end_marker.len()..];
    }
    blocks
}

/// One DER element: its tag, its content, and the bytes after it.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
    rest: &'a [u8],
}

fn read_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, mut after_len) = after_tag.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || after_len.len() < count {
            return None;
        }
        let mut len = 0usize;
        for &byte in &after_len[..count] {
            len = (len << 8) | usize::from(byte);
        }
        after_len = &after_len[count..];
        len
    };
    if after_len.len() < len {
        return None;
    }
    let header_len = input.len() - after_len.len();
    Some(Tlv {
        tag,
        whole: &input[..header_len + len],
        content: &after_len[..len],
        rest: &after_len[len..],
    })
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The key kind named by a SubjectPublicKeyInfo's algorithm identifier.
fn spki_kind(spki: &[u8]) -> Result<KeyKind, String> {
    let malformed = || "the public key is not valid DER SubjectPublicKeyInfo".to_owned();
    let outer = read_tlv(spki)
        .filter(|t| t.tag == SEQUENCE)
        .ok_or_else(malformed)?;
    let algorithm = read_tlv(outer.content)
        .filter(|t| t.tag == SEQUENCE)
        .ok_or_else(malformed)?;
    let oid = read_tlv(algorithm.content)
        .filter(|t| t.tag == OID)
        .ok_or_else(malformed)?;
    match oid.content {
        OID_RSA => Ok(KeyKind::Rsa),
        OID_ED25519 => Ok(KeyKind::Ed25519),
        OID_EC => match read_tlv(oid.rest).filter(|t| t.tag == OID).map(|t| t.content) {
            Some(OID_P256) => Ok(KeyKind::EcP256),
            Some(OID_P384) => Ok(KeyKind::EcP384),
            _ => Err("unsupported EC curve: expected P-256 (ES256) or P-384 (ES384)".to_owned()),
        },
        OID_RSA_PSS => Err(
            "RSASSA-PSS-only keys are not supported: export the key as a plain RSA (rsaEncryption) key"
                .to_owned(),
        ),
        _ => Err("unsupported key type: expected an RSA, EC P-256/P-384 or Ed25519 key".to_owned()),
    }
}

/// The SubjectPublicKeyInfo (whole DER element) inside an X.509 certificate.
fn certificate_spki(der: &[u8]) -> Option<&[u8]> {
    let certificate = read_tlv(der).filter(|t| t.tag == SEQUENCE)?;
    let tbs = read_tlv(certificate.content).filter(|t| t.tag == SEQUENCE)?;
    let mut fields = tbs.content;
    // Optional explicit version `[0]`.
    if fields.first() == Some(&0xa0) {
        fields = read_tlv(fields)?.rest;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        fields = read_tlv(fields)?.rest;
    }
    let spki = read_tlv(fields).filter(|t| t.tag == SEQUENCE)?;
    Some(spki.whole)
}

/// The modulus size of a PKCS#1 `RSAPublicKey` or an SPKI wrapping one.
fn rsa_modulus_bits(der: &[u8]) -> Option<usize> {
    let outer = read_tlv(der).filter(|t| t.tag == SEQUENCE)?;
    let first = read_tlv(outer.content)?;
    match first.tag {
        // SPKI: AlgorithmIdentifier, then BIT STRING (unused-bits byte, then RSAPublicKey).
        SEQUENCE => {
            let bits = read_tlv(first.rest).filter(|t| t.tag == 0x03)?;
            rsa_modulus_bits(bits.content.get(1..)?)
        }
        // RSAPublicKey: INTEGER modulus first.
        0x02 => {
            let n = first.content;
            let start = n.iter().position(|&b| b != 0)?;
            Some((n.len() - start) * 8 - n[start].leading_zeros() as usize)
        }
        _ => None,
    }
}

/// DER `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` from the unsigned
/// big-endian components of a JWK.
pub(crate) fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, value: &[u8]) {
        let start = value.iter().position(|&b| b != 0).unwrap_or(value.len());
        let value = &value[start..];
        let pad = value.first().is_none_or(|&b| b & 0x80 != 0);
        out.push(0x02);
        push_len(out, value.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
    }
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(bytes.len() - 1);
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.push(SEQUENCE);
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_is_unknown() {
        for alg in Alg::ALL {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
        for name in ["none", "None", "NONE", "hs256", "", "RS1"] {
            assert_eq!(Alg::from_name(name), None, "{name}");
        }
    }

    #[test]
    fn der_length_forms() {
        let short = [0x30, 0x02, 0x05, 0x00, 0xff];
        let tlv = read_tlv(&short).unwrap();
        assert_eq!(
            (tlv.tag, tlv.content, tlv.rest),
            (0x30, &[5, 0][..], &[0xff][..])
        );
        let long = [0x04, 0x81, 0x01, 0xaa];
        assert_eq!(read_tlv(&long).unwrap().content, &[0xaa]);
        assert!(read_tlv(&[0x04, 0x82, 0x01]).is_none());
        assert!(read_tlv(&[0x04, 0x05, 0x01]).is_none());
        assert!(read_tlv(&[]).is_none());
    }

    #[test]
    fn rsa_der_pads_high_bit_and_strips_zeros() {
        let der = rsa_public_key_der(&[0x00, 0x80, 0x01], &[0x01, 0x00, 0x01]);
        assert_eq!(
            der,
            [
                0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01
            ]
        );
    }

    #[test]
    fn rsa_sizes() {
        let mut n = vec![0x80];
        n.extend([0u8; 255]);
        let pkcs1 = rsa_public_key_der(&n, &[1, 0, 1]);
        assert_eq!(rsa_modulus_bits(&pkcs1), Some(2048));
        let small = rsa_public_key_der(&[0x7f; 128], &[3]);
        assert_eq!(rsa_modulus_bits(&small), Some(1023));
        let error = KeyRing::public(KeyKind::Rsa, &small, &[Alg::RS256]).unwrap_err();
        assert!(error.contains("1023 bits"), "{error}");
        assert_eq!(rsa_modulus_bits(&[0x30, 0x00]), None);
    }

    #[test]
    fn pem_refuses_private_keys_and_garbage() {
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(
            parse_public_pem(private)
                .unwrap_err()
                .contains("private key")
        );
        assert!(parse_public_pem("hello").unwrap_err().contains("PEM"));
        let bad = "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n";
        assert!(parse_public_pem(bad).unwrap_err().contains("base64"));
        let not_der = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        assert!(parse_public_pem(not_der).unwrap_err().contains("DER"));
    }
}
