//! TLS for probes: the system's web PKI roots (plus `PROBE_CA_FILE`), a verifier that keeps
//! the chain the server presented — so an expired or untrusted certificate is still reported
//! with its dates — and the validity dates read from each certificate.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;

/// What the server's certificate chain says.
#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    pub leaf_not_before: Option<DateTime<Utc>>,
    pub leaf_not_after: Option<DateTime<Utc>>,
    /// The earliest expiry anywhere in the chain the server sent.
    pub earliest_not_after: Option<DateTime<Utc>>,
    pub chain_length: usize,
    /// Whether the chain verified against the trusted roots for this host name.
    pub verified: bool,
}

impl TlsInfo {
    pub fn from_chain(chain: &[CertificateDer<'_>], verified: bool) -> TlsInfo {
        let dates: Vec<Option<(DateTime<Utc>, DateTime<Utc>)>> =
            chain.iter().map(|c| validity(c)).collect();
        TlsInfo {
            leaf_not_before: dates.first().copied().flatten().map(|d| d.0),
            leaf_not_after: dates.first().copied().flatten().map(|d| d.1),
            earliest_not_after: dates.iter().flatten().map(|d| d.1).min(),
            chain_length: chain.len(),
            verified,
        }
    }

    /// Days until the earliest expiry in the chain (negative once expired).
    pub fn days_left(&self, now: DateTime<Utc>) -> Option<f64> {
        self.earliest_not_after
            .map(|t| (t - now).num_seconds() as f64 / 86_400.0)
    }
}

/// The probes' TLS set-up: trusted roots (Mozilla's web PKI plus any PEM certificates in
/// `PROBE_CA_FILE`), built once and shared.
pub struct Tls {
    base: Arc<ClientConfig>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl Tls {
    pub fn new(extra: Option<&Path>) -> Result<Tls, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read PROBE_CA_FILE={}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    format!(
                        "PROBE_CA_FILE={} is not PEM certificates: {e}",
                        path.display()
                    )
                })?;
            if certs.is_empty() {
                return Err(format!(
                    "PROBE_CA_FILE={} holds no certificates",
                    path.display()
                ));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    format!(
                        "PROBE_CA_FILE={}: a certificate was refused: {e}",
                        path.display()
                    )
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(roots);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let mut base = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        base.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            base: Arc::new(base),
            verifier,
        })
    }

    /// A config for one connection whose verifier records the chain it is shown, so a chain
    /// that fails verification is still reported with its dates.
    pub fn for_connection(&self) -> (Arc<ClientConfig>, Arc<Mutex<Vec<CertificateDer<'static>>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut config = (*self.base).clone();
        config
            .dangerous()
            .set_certificate_verifier(Arc::new(Recording {
                inner: self.verifier.clone(),
                seen: seen.clone(),
            }));
        (Arc::new(config), seen)
    }
}

#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.seen.lock().unwrap() = chain;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER element: (tag, contents, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// notBefore and notAfter of an X.509 certificate.
pub fn validity(der: &[u8]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for expected in [0x02, 0x30, 0x30] {
        // serialNumber, signature algorithm, issuer
        let (tag, _, after) = tlv(rest)?;
        if tag != expected {
            return None;
        }
        rest = after;
    }
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (t1, not_before, after) = tlv(validity)?;
    let (t2, not_after, _) = tlv(after)?;
    Some((time(t1, not_before)?, time(t2, not_after)?))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ).
fn time(tag: u8, bytes: &[u8]) -> Option<DateTime<Utc>> {
    let s = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i32 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<u32>().ok();
    NaiveDate::from_ymd_opt(year, n(0)?, n(2)?)?
        .and_hms_opt(n(4)?, n(6)?, n(8)?)
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utc_and_generalized_times() {
        assert_eq!(
            time(0x17, b"261122120000Z").unwrap().to_rfc3339(),
            "2026-11-22T12:00:00+00:00"
        );
        assert_eq!(
            time(0x17, b"991231235959Z").unwrap().to_rfc3339(),
            "1999-12-31T23:59:59+00:00"
        );
        assert_eq!(
            time(0x18, b"20610101000000Z").unwrap().to_rfc3339(),
            "2061-01-01T00:00:00+00:00"
        );
        assert!(time(0x17, b"2611221200Z").is_none());
        assert!(validity(b"\x30\x03\x02\x01\x00").is_none());
    }
}
