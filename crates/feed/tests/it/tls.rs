//! TLS for the tests: a test CA and a server certificate it issued (made with `rcgen`), and a
//! real TLS endpoint on 127.0.0.1 (tokio-rustls) that forwards every connection in the clear to
//! a plain server behind it (the broker for `amqps://`, the provider stand-in for `https://`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

/// A test CA and a server certificate it issued for `localhost` only.
pub struct Certificates {
    pub ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

pub fn test_ca(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    (params.self_signed(&key).expect("CA certificate"), key)
}

pub fn certificates() -> Certificates {
    let (ca, ca_key) = test_ca("sportsbook test CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    let server = params.signed_by(&key, &ca, &ca_key).expect("server certificate");
    Certificates {
        ca_pem: ca.pem(),
        chain: vec![server.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    }
}

/// A TLS endpoint on 127.0.0.1 that forwards every connection to `upstream` in the clear.
pub struct TlsTerminator {
    pub address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn tls_terminator(certificates: &Certificates, upstream: SocketAddr) -> TlsTerminator {
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certificates.chain.clone(), certificates.key.clone_key())
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses our certificate ends here.
                let Ok(mut client) = acceptor.accept(client).await else { return };
                let mut server = TcpStream::connect(upstream)
                    .await
                    .unwrap_or_else(|error| panic!("nothing listens on {upstream} behind the TLS endpoint: {error}"));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    TlsTerminator { address, task }
}
