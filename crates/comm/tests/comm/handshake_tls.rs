//! TLS under the handshake, on loopback TCP with `TlsMode::On` standing in for two hosts:
//! bytes cross encrypted, and each way of disagreeing (another secret, TLS on one side
//! only) is refused on both sides with a reason that names it.

use chorus_comm::handshake::{handshake_tcp_with, Hello, Role};
use chorus_comm::tls::{Secured, TlsMode};
use chorus_comm::{Error, Refusal, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Side = Result<(Secured, Hello), Error>;

/// Connects a client in `(mode, secret)` to a server in its own, and runs both handshakes.
fn pair(client: (TlsMode, &Secret), server: (TlsMode, &Secret), exchange: bool) -> (Side, Side) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = |rank| Hello::new(Role::Rank { rank, size: 2 }).unwrap();
        let dial = async {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut side = handshake_tcp_with(client.0, s, client.1, me(1), &|_| Ok(()), "to", "the server").await;
            if let (Ok((s, _)), true) = (&mut side, exchange) {
                s.write_all(&[42u8; 300_000]).await.unwrap();
                s.flush().await.unwrap();
                let mut back = vec![0u8; 300_000];
                s.read_exact(&mut back).await.unwrap();
                assert!(back.iter().all(|b| *b == 43));
            }
            side
        };
        let serve = async {
            let (s, _) = listener.accept().await.unwrap();
            let mut side = handshake_tcp_with(server.0, s, server.1, me(0), &|_| Ok(()), "from", "the client").await;
            if let (Ok((s, _)), true) = (&mut side, exchange) {
                let mut got = vec![0u8; 300_000];
                s.read_exact(&mut got).await.unwrap();
                assert!(got.iter().all(|b| *b == 42));
                s.write_all(&[43u8; 300_000]).await.unwrap();
                s.flush().await.unwrap();
            }
            side
        };
        tokio::join!(dial, serve)
    })
}

fn refusal(side: &Side) -> Refusal {
    match side {
        Err(Error::Refused { refusal, .. }) => refusal.clone(),
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, the handshake succeeded"),
    }
}

#[test]
fn the_same_secret_gives_an_encrypted_authenticated_connection() {
    let s = Secret::generate().unwrap();
    let (client, server) = pair((TlsMode::On, &s), (TlsMode::On, &s), true);
    let ((c, ch), (v, vh)) = (client.unwrap(), server.unwrap());
    assert!(c.is_tls() && v.is_tls());
    assert_eq!((ch.role, vh.role), (Role::Rank { rank: 0, size: 2 }, Role::Rank { rank: 1, size: 2 }));
}

#[test]
fn loopback_stays_plain_unless_tls_is_on() {
    let s = Secret::generate().unwrap();
    let (client, server) = pair((TlsMode::Auto, &s), (TlsMode::Auto, &s), true);
    assert!(!client.unwrap().0.is_tls() && !server.unwrap().0.is_tls());
}

#[test]
fn another_secret_is_refused_as_another_clusters_key_on_both_sides() {
    let (a, b) = (Secret::generate().unwrap(), Secret::generate().unwrap());
    let (client, server) = pair((TlsMode::On, &a), (TlsMode::On, &b), false);
    assert_eq!(refusal(&client), Refusal::WrongKey);
    assert_eq!(refusal(&server), Refusal::WrongKey);
    let msg = client.unwrap_err().to_string();
    assert!(msg.contains("another secret") && msg.contains("the server"), "{msg}");
}

#[test]
fn a_client_without_tls_is_told_the_server_requires_it() {
    let s = Secret::generate().unwrap();
    let (client, server) = pair((TlsMode::Off, &s), (TlsMode::On, &s), false);
    assert_eq!(refusal(&client), Refusal::TlsRequired);
    assert_eq!(refusal(&server), Refusal::PeerWithoutTls);
    let msg = client.unwrap_err().to_string();
    assert!(msg.contains("CHORUS_TLS=off"), "{msg}");
}

#[test]
fn a_server_without_tls_refuses_a_tls_client_and_the_client_names_it() {
    let s = Secret::generate().unwrap();
    let (client, server) = pair((TlsMode::On, &s), (TlsMode::Off, &s), false);
    assert_eq!(refusal(&client), Refusal::PeerWithoutTls);
    assert_eq!(refusal(&server), Refusal::PeerUsesTls);
    assert!(server.unwrap_err().to_string().contains("CHORUS_TLS"));
}

#[test]
fn garbage_on_a_tls_port_is_refused_without_harm() {
    let s = Secret::generate().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = Hello::new(Role::Coordinator).unwrap();
        let attack = async {
            let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
            // A TLS record header announcing a ClientHello, then junk.
            raw.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).await.unwrap();
            raw.write_all(&[0xee; 64]).await.unwrap();
            let mut sink = Vec::new();
            let _ = raw.read_to_end(&mut sink).await;
        };
        let serve = async {
            let (t, _) = listener.accept().await.unwrap();
            handshake_tcp_with(TlsMode::On, t, &s, me, &|_| Ok(()), "from", "a raw socket").await
        };
        let ((), side) = tokio::join!(attack, serve);
        assert!(matches!(refusal(&side), Refusal::Tls(_)), "{:?}", side.err());
    });
}
