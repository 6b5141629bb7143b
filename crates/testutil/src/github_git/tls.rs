//! The server's TLS: a throwaway certificate authority and a certificate
//! for `127.0.0.1` and `localhost` signed by it, made at start. git trusts
//! the authority through `GIT_SSL_CAINFO` (a CA and a leaf rather than one
//! self-signed leaf, since not every TLS library git links accepts a leaf
//! as its own trust anchor).

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Makes the authority and the server certificate, writes the authority's
/// PEM to `ca_path`, and returns the rustls server configuration.
pub(crate) fn server_config(ca_path: &Path) -> Arc<rustls::ServerConfig> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bridge test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(ca_path, ca.pem()).unwrap();

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    // git's smart HTTP over HTTP/1.1 only: hyper serves http1 here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
