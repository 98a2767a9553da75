//! TLS on every TCP connection that leaves the host, with nothing for the user to manage.
//!
//! A job or cluster already has one secret (see [`Secret`]); its TLS identity is derived
//! from it. Every process turns the secret into the same Ed25519 key
//! (`HMAC-SHA256(secret, "chorus tls v1: ed25519 key")` is the key's seed) and presents its
//! public key as a raw public key (RFC 7250) rather than a certificate, in TLS 1.3 with
//! client authentication. Each side accepts exactly one key, the one its own secret gives,
//! so both ends prove they hold the secret before a byte of chorus traffic is exchanged,
//! and no certificate authority, file or expiry date is involved. The HMAC challenge of
//! [`handshake`](crate::handshake) still runs, inside the encrypted channel.
//!
//! Whether a connection is encrypted is decided by [`TlsMode`] (`CHORUS_TLS`), from the
//! connection's two addresses alone, so both ends always reach the same answer without
//! negotiating: by default TCP between two loopback addresses stays plain (it never leaves
//! the host; neither do Unix sockets, which live in `0700` directories) and every other
//! TCP connection is encrypted.
//!
//! A peer that disagrees is refused with a reason that names the setting on both sides
//! ([`Refusal::PeerWithoutTls`], [`Refusal::TlsRequired`], [`Refusal::PeerUsesTls`]); a
//! peer with another secret is refused as [`Refusal::WrongKey`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use hmac::{Hmac, Mac};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::link::{LinkReader, LinkWriter};
use crate::{Error, Refusal, Result, Secret};

/// When TCP connections are encrypted (`CHORUS_TLS=auto|on|off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Every TCP connection that leaves the host: all but those between two loopback
    /// addresses.
    #[default]
    Auto,
    /// Every TCP connection, loopback included (to measure or test TLS on one host).
    On,
    /// None. Every process of a job or cluster must then have it off.
    Off,
}

impl TlsMode {
    /// `CHORUS_TLS`, from [`settings`](crate::settings::settings).
    pub fn from_env() -> Result<TlsMode> {
        Ok(crate::settings::settings()?.tls)
    }

    /// Whether the TCP connection between `local` and `peer` is encrypted. The two ends
    /// of a connection see the same pair of addresses, swapped, so they always agree.
    pub fn applies(self, local: SocketAddr, peer: SocketAddr) -> bool {
        match self {
            TlsMode::Off => false,
            TlsMode::On => true,
            TlsMode::Auto => !(is_loopback(local.ip()) && is_loopback(peer.ip())),
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The TLS client and server configurations of one secret.
pub struct ClusterTls {
    client: tokio_rustls::TlsConnector,
    server: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls { .. }")
    }
}

/// The PKCS#8 v1 encoding of an Ed25519 private key (RFC 8410) up to its 32-byte seed.
const PKCS8_ED25519_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

impl ClusterTls {
    /// The configurations for `secret`, made once per secret and process.
    pub fn for_secret(secret: &Secret) -> Result<Arc<ClusterTls>> {
        static MADE: OnceLock<Mutex<HashMap<[u8; 32], Arc<ClusterTls>>>> = OnceLock::new();
        let id = derive(secret, b"chorus tls v1: cache key");
        let mut made = MADE.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tls) = made.get(&id) {
            return Ok(tls.clone());
        }
        let tls = Arc::new(ClusterTls::new(secret)?);
        made.insert(id, tls.clone());
        Ok(tls)
    }

    fn new(secret: &Secret) -> Result<ClusterTls> {
        let failed = |what: &str, e: rustls::Error| Error::Config(format!("setting up TLS: {what}: {e}"));
        // AES-128-GCM first: as safe as AES-256 for this use and faster on every CPU with
        // AES instructions, which is what bulk transfers feel.
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let provider = Arc::new(provider);
        let mut pkcs8 = PKCS8_ED25519_PREFIX.to_vec();
        pkcs8.extend_from_slice(&derive(secret, b"chorus tls v1: ed25519 key"));
        let key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))
            .map_err(|e| failed("loading the cluster key", e))?;
        let spki = key
            .public_key()
            .ok_or_else(|| Error::Config("setting up TLS: the cluster key has no public key".into()))?
            .as_ref()
            .to_vec();
        let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![CertificateDer::from(spki.clone())], key));
        let verifier = Arc::new(ClusterKey { spki, algorithms: provider.signature_verification_algorithms });
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| failed("the client configuration", e))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_cert_resolver(Arc::new(rustls::client::AlwaysResolvesClientRawPublicKeys::new(certified.clone())));
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| failed("the server configuration", e))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(rustls::server::AlwaysResolvesServerRawPublicKeys::new(certified)));
        // Connections are long-lived and never resumed: no session tickets, which would
        // also be the only records a server sends unasked.
        server.send_tls13_tickets = 0;
        Ok(ClusterTls {
            client: tokio_rustls::TlsConnector::from(Arc::new(client)),
            server: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// Runs the client side of TLS on a connection we opened.
    pub async fn connect(&self, tcp: TcpStream) -> Result<Secured, Refusal> {
        let name = ServerName::try_from("chorus").expect("a valid DNS name");
        match self.client.connect(name, tcp).await {
            Ok(s) => Ok(Secured::Tls(Box::new(tokio_rustls::TlsStream::Client(s)))),
            Err(e) => Err(classify(&e, true)),
        }
    }

    /// Runs the server side of TLS on a connection we accepted.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Secured, Refusal> {
        match self.server.accept(tcp).await {
            Ok(s) => Ok(Secured::Tls(Box::new(tokio_rustls::TlsStream::Server(s)))),
            Err(e) => Err(classify(&e, false)),
        }
    }
}

fn derive(secret: &Secret, label: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

/// Names a failed TLS handshake by its cause. A client that hears something other than
/// TLS has a peer without TLS; a server that does has been sent garbage.
fn classify(e: &io::Error, client: bool) -> Refusal {
    use rustls::Error as E;
    match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::InvalidCertificate(_) | E::NoCertificatesPresented) => Refusal::WrongKey,
        Some(E::AlertReceived(
            AlertDescription::AccessDenied | AlertDescription::BadCertificate | AlertDescription::CertificateUnknown | AlertDescription::CertificateRequired,
        )) => Refusal::WrongKey,
        Some(E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. }) if client => {
            Refusal::PeerWithoutTls
        }
        Some(other) => Refusal::Tls(other.to_string()),
        None if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::ConnectionReset => Refusal::Tls(format!(
            "the peer closed the connection during the TLS handshake ({e}); if it runs with CHORUS_TLS=off, set CHORUS_TLS the same on every process"
        )),
        None => Refusal::Tls(e.to_string()),
    }
}

/// Accepts exactly the cluster's public key, on both sides of a connection.
#[derive(Debug)]
struct ClusterKey {
    spki: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClusterKey {
    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.spki.as_slice() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn signature(&self, message: &[u8], key: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &SubjectPublicKeyInfoDer::from(key.as_ref()), dss, &self.algorithms)
    }
}

/// Both configurations allow TLS 1.3 only, so no TLS 1.2 signature reaches a verifier.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::General("chorus speaks TLS 1.3 only".into()))
}

impl ServerCertVerifier for ClusterKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(&self, message: &[u8], key: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, key, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for ClusterKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(&self, end_entity: &CertificateDer<'_>, _intermediates: &[CertificateDer<'_>], _now: UnixTime) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, _: &[u8], _: &CertificateDer<'_>, _: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(&self, message: &[u8], key: &CertificateDer<'_>, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, key, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// A TCP connection, encrypted or not (see [`TlsMode`]).
#[derive(Debug)]
pub enum Secured {
    /// Plain TCP: both ends are loopback addresses, or TLS is off.
    Plain(TcpStream),
    /// TCP under TLS.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Secured {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Secured::Plain(s) => s,
            Secured::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Secured::Tls(_))
    }

    /// Splits the connection into boxed halves for a link of the mesh.
    pub fn into_split(self) -> (LinkReader, LinkWriter) {
        let _ = self.tcp().set_nodelay(true);
        crate::link::enlarge_buffers(socket2::SockRef::from(self.tcp()));
        match self {
            Secured::Plain(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            Secured::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }

    /// The socket and, under TLS, the session, for a caller that drives them itself (the
    /// task layer's blocking sockets). Plaintext the session has already decrypted stays
    /// in it, to be read first.
    pub fn into_parts(self) -> (TcpStream, Option<rustls::Connection>) {
        match self {
            Secured::Plain(s) => (s, None),
            Secured::Tls(s) => match *s {
                tokio_rustls::TlsStream::Client(c) => {
                    let (s, c) = c.into_inner();
                    (s, Some(c.into()))
                }
                tokio_rustls::TlsStream::Server(c) => {
                    let (s, c) = c.into_inner();
                    (s, Some(c.into()))
                }
            },
        }
    }
}

impl AsyncRead for Secured {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Secured::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Secured::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Secured {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Secured::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Secured::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Secured::Plain(s) => Pin::new(s).poll_flush(cx),
            Secured::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Secured::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Secured::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
