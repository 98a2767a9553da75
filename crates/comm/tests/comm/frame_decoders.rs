//! Random bytes into every decoder: an error, never a panic.

use bytes::Bytes;
use chorus_comm::frame::{CollectiveOp, DataHeader, Frame, ProbeReply, RemoteParts, Signature, Space, FIRST, LAST, MAX_FRAME, REMOTE};
use chorus_comm::handshake::{handshake, Hello, Role};
use chorus_comm::Secret;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn frame_decode_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Frame::decode(Bytes::from(body));
    }

    #[test]
    fn data_frames_with_random_headers_decode_or_fail_cleanly(mut header in proptest::collection::vec(any::<u8>(), 32), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        header[0] = 0;
        let mut body = header;
        body.extend_from_slice(&payload);
        if let Ok(Frame::Data { header, payload: p }) = Frame::decode(Bytes::from(body)) {
            if header.flags & REMOTE == 0 {
                prop_assert!(p.len() as u64 <= header.total);
            } else {
                prop_assert_eq!(header.flags & (FIRST | LAST), FIRST | LAST, "a remote message is never chunked");
            }
        }
    }

    /// A remote message's description names at most MAX_REMOTE_PARTS ranges that add up
    /// to the message's length, or it is refused.
    #[test]
    fn remote_descriptions_decode_only_when_consistent(body in proptest::collection::vec(any::<u8>(), 0..120), total in any::<u64>()) {
        if let Ok(d) = RemoteParts::decode(&body, total) {
            prop_assert_eq!(d.ranges.iter().map(|r| r.1 as u64).sum::<u64>(), total);
        }
    }

    #[test]
    fn remote_descriptions_round_trip(id in any::<u64>(), ranges in proptest::collection::vec((any::<u64>(), 0usize..1 << 40), 0..20)) {
        let total = ranges.iter().map(|r| r.1 as u64).sum();
        let d = RemoteParts { id, ranges };
        prop_assert_eq!(RemoteParts::decode(&d.encode(), total).unwrap(), d);
    }

    #[test]
    fn control_frames_with_random_bodies_never_panic(kind in 1u8..9, tail in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut body = vec![kind];
        body.extend_from_slice(&tail);
        let _ = Frame::decode(Bytes::from(body));
    }

    #[test]
    fn probe_frames_round_trip(probed in any::<u64>(), latest in proptest::option::of(any::<u64>()), sig in proptest::option::of((any::<u32>(), any::<u32>()))) {
        let reply = ProbeReply {
            probed,
            latest,
            at_probed: sig.map(|(root, type_hash)| Signature { op: CollectiveOp::Reduce, root, type_hash }),
        };
        prop_assert_eq!(Frame::decode(Bytes::from(Frame::probe_reply_body(&reply))).unwrap(), Frame::ProbeReply(reply));
        prop_assert_eq!(Frame::decode(Bytes::from(Frame::probe_body(probed))).unwrap(), Frame::Probe { seq: probed });
    }

    #[test]
    fn shared_copy_frames_round_trip(id in any::<u64>(), from in any::<u64>(), addr in any::<u64>(), done in any::<bool>(), nanos in any::<u64>()) {
        prop_assert_eq!(Frame::decode(Bytes::from(Frame::share_body(id, from, addr))).unwrap(), Frame::Share { id, from, addr });
        prop_assert_eq!(Frame::decode(Bytes::from(Frame::written_body(id, done, nanos))).unwrap(), Frame::Written { id, done, nanos });
        let mut bad = Frame::written_body(id, done, nanos);
        bad[9] = 2;
        prop_assert!(Frame::decode(Bytes::from(bad)).is_err());
    }

    #[test]
    fn hello_decode_never_panics(body in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = Hello::decode(&body);
    }

    #[test]
    fn hello_with_chorus_magic_and_random_tail_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..100)) {
        let mut body = b"CHORUS\x01\x00".to_vec();
        body.extend_from_slice(&tail);
        let _ = Hello::decode(&body);
    }

    #[test]
    fn data_header_round_trips(flags in 0u8..4, root in any::<u32>(), seq in any::<u64>(), hash in any::<u32>(), len in 0usize..100) {
        let header = DataHeader {
            space: if seq % 2 == 0 { Space::Collective } else { Space::Message },
            flags: flags & (FIRST | LAST),
            sig: Signature { op: CollectiveOp::Allgatherv, root, type_hash: hash },
            seq,
            total: len as u64 + 5,
        };
        let mut body = header.encode().to_vec();
        body.extend(std::iter::repeat_n(7u8, len));
        let Frame::Data { header: back, payload } = Frame::decode(Bytes::from(body)).unwrap() else { panic!("not data") };
        prop_assert_eq!(back, header);
        prop_assert_eq!(payload.len(), len);
    }
}

#[test]
fn oversized_frames_are_rejected() {
    let body = vec![0u8; MAX_FRAME + 1];
    assert!(Frame::decode(Bytes::from(body)).is_err());
}

#[test]
fn random_bytes_into_the_handshake_end_it_with_an_error() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut seed = 0x1234_5678_u64;
    for round in 0..300 {
        let len = (round * 7) % 300;
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 56) as u8
            })
            .collect();
        let outcome = rt.block_on(async {
            let (mut ours, mut theirs) = tokio::io::duplex(1 << 16);
            let writer = tokio::spawn(async move {
                let _ = theirs.write_all(&junk).await;
                let _ = theirs.shutdown().await;
                // Keep reading so our side's writes never block.
                let mut sink = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut sink).await;
            });
            let me = Hello::new(Role::Rank { rank: 0, size: 2 }).unwrap();
            let r = handshake(&mut ours, &Secret::generate().unwrap(), me, &|_| Ok(()), "from", "fuzz").await;
            drop(ours);
            let _ = writer.await;
            r
        });
        assert!(outcome.is_err(), "random bytes passed the handshake");
    }
}
