//! Transport security material: a cluster's private certificate authority, node
//! certificates whose identity is the node id, and the rustls configurations built
//! from them.
//!
//! A node certificate names the node in a DNS subject alternative name,
//! [`node_name`] (`n3.node.stratus` for node 3), beside the host names and IPs
//! clients dial. Nodes dial each other by that name, so a peer holding a valid
//! certificate of *another* node fails the handshake; a node serving a peer reads
//! the name back with [`identify_node`].
//!
//! Pure: PEM text in, PEM text or configurations out. Files are the node crate's
//! business (`stratus-node tls init`).

use crate::topology::NodeId;
use std::sync::Arc;
use zeroize::Zeroizing;

pub use rustls;
pub use rustls::pki_types::{CertificateDer, ServerName};

/// The DNS domain under which node identities are named.
pub const NODE_NAME_DOMAIN: &str = "node.stratus";

/// How long generated certificates are valid, in years.
pub const CERT_VALIDITY_YEARS: i32 = 10;

/// The ALPN protocol every Stratus endpoint speaks (gRPC is HTTP/2 only).
const ALPN_H2: &[u8] = b"h2";

/// The identity name of node `id` in its certificate.
pub fn node_name(id: NodeId) -> String {
    format!("n{id}.{NODE_NAME_DOMAIN}")
}

/// Why TLS material could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate {what}: {why}")]
    Generate { what: String, why: String },
    #[error("{what} is not usable: {why}")]
    Material { what: String, why: String },
}

fn material(what: &str, why: impl std::fmt::Display) -> TlsError {
    TlsError::Material {
        what: what.to_owned(),
        why: why.to_string(),
    }
}

fn generate(what: &str, why: impl std::fmt::Display) -> TlsError {
    TlsError::Generate {
        what: what.to_owned(),
        why: why.to_string(),
    }
}

/// A certificate and its private key, both PEM.
pub struct CertifiedPem {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for CertifiedPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertifiedPem")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Validity window starting at the beginning of `year` (so clocks a little behind
/// still accept it) and lasting [`CERT_VALIDITY_YEARS`].
fn validity(params: &mut rcgen::CertificateParams, year: i32) {
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + CERT_VALIDITY_YEARS, 12, 31);
}

/// A new self-signed CA for a cluster, valid from the start of `year`. `label`
/// goes into its common name so operators can tell clusters' CAs apart.
pub fn generate_ca(label: &str, year: i32) -> Result<CertifiedPem, TlsError> {
    let key = rcgen::KeyPair::generate().map_err(|e| generate("the CA key", e))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("Stratus cluster CA {label}"),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Stratus");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, year);
    let cert = params
        .self_signed(&key)
        .map_err(|e| generate("the CA certificate", e))?;
    Ok(CertifiedPem {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

/// A certificate for node `id` signed by `ca`: its identity name
/// ([`node_name`]) plus `hosts` (host names or IPs the node is dialled at),
/// usable as both TLS server and client (nodes dial each other).
pub fn issue_node_cert(
    ca: &CertifiedPem,
    id: NodeId,
    hosts: &[String],
    year: i32,
) -> Result<CertifiedPem, TlsError> {
    let ca_key =
        rcgen::KeyPair::from_pem(&ca.key_pem).map_err(|e| material("the CA private key", e))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| material("the CA certificate", e))?;
    let mut names = vec![node_name(id)];
    for h in hosts {
        let h = h.trim().trim_start_matches('[').trim_end_matches(']');
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_owned());
        }
    }
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| generate(&format!("the certificate of node {id}"), e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node_name(id));
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, year);
    let key =
        rcgen::KeyPair::generate().map_err(|e| generate(&format!("the key of node {id}"), e))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| generate(&format!("the certificate of node {id}"), e))?;
    Ok(CertifiedPem {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| material(what, e))?;
    if certs.is_empty() {
        return Err(material(what, "it holds no PEM certificate"));
    }
    Ok(certs)
}

fn roots(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs("the CA certificate", ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| material("the CA certificate", e))?;
    }
    Ok(Arc::new(roots))
}

fn private_key(pem: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| material("the private key", e))
}

/// A node's server side: its certificate, and client certificates checked
/// against the cluster CA when presented. Clients without a certificate are let
/// through the handshake (SDK users authenticate with tokens); the peer service
/// then refuses any caller that is not a node ([`identify_node`]).
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| material("the CA certificate", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| material("the TLS protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs("the node certificate", cert_pem)?,
            private_key(key_pem)?,
        )
        .map_err(|e| material("the node certificate and key", e))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A node's client side towards its peers: trusts only the cluster CA and
/// presents the node's own certificate.
pub fn node_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| material("the TLS protocol versions", e))?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(
            certs("the node certificate", cert_pem)?,
            private_key(key_pem)?,
        )
        .map_err(|e| material("the node certificate and key", e))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// An SDK client: trusts only the cluster CA, presents no certificate.
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| material("the TLS protocol versions", e))?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The name a client checks the server's certificate against when it dials
/// `addr` (`host:port`): the host, as an IP address or a DNS name.
pub fn server_name_of(addr: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match addr.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| material(&format!("the address {addr:?}"), e))
}

/// The node among `candidates` whose identity the (already chain-verified)
/// certificate `cert` carries, if any.
pub fn identify_node(
    cert: &CertificateDer<'_>,
    candidates: impl IntoIterator<Item = NodeId>,
) -> Option<NodeId> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    candidates.into_iter().find(|id| {
        ServerName::try_from(node_name(*id))
            .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem")
    }

    #[test]
    fn node_certificates_name_their_node_and_hosts() {
        let ca = generate_ca("test", 2026).expect("ca");
        let n3 = issue_node_cert(&ca, 3, &["127.0.0.1".into(), "eu-west-n3".into()], 2026)
            .expect("node cert");
        let cert = der(&n3.cert_pem);
        assert_eq!(identify_node(&cert, [1, 2, 3, 4]), Some(3));
        assert_eq!(identify_node(&cert, [1, 2, 4]), None);
        let end = webpki::EndEntityCert::try_from(&cert).expect("parse");
        for host in ["127.0.0.1", "eu-west-n3", "n3.node.stratus"] {
            let name = ServerName::try_from(host).expect("name");
            assert!(
                end.verify_is_valid_for_subject_name(&name).is_ok(),
                "{host}"
            );
        }
        let other = ServerName::try_from("n4.node.stratus").expect("name");
        assert!(end.verify_is_valid_for_subject_name(&other).is_err());
        // Every configuration builds from the generated material.
        server_config(&ca.cert_pem, &n3.cert_pem, &n3.key_pem).expect("server");
        node_client_config(&ca.cert_pem, &n3.cert_pem, &n3.key_pem).expect("client");
        client_config(&ca.cert_pem).expect("sdk");
        assert!(!format!("{n3:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn bad_material_names_what_is_wrong() {
        let e = client_config("not a pem").expect_err("garbage");
        assert!(e.to_string().contains("CA certificate"), "{e}");
        let ca = generate_ca("test", 2026).expect("ca");
        let n1 = issue_node_cert(&ca, 1, &[], 2026).expect("node");
        let e = server_config(&ca.cert_pem, &n1.cert_pem, "nope").expect_err("key");
        assert!(e.to_string().contains("private key"), "{e}");
    }

    #[test]
    fn server_names_come_from_the_dialled_host() {
        assert!(matches!(
            server_name_of("127.0.0.1:7101"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name_of("[::1]:7101"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name_of("eu-west-n1:7100"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name_of("bad host:1").is_err());
    }
}
