//! Every decoder of the task protocol fed the corpus, mutations of it and random bytes:
//! an error, never a panic, never an allocation beyond the frame limit; and batches
//! split by `encode_batched` decode to the same items, in order.
//!
//! The number of cases per property is `CHORUS_FUZZ_CASES` (default 3,000; the closing
//! note of the work that added these gives a run of a million).

use chorus_tasks::proto::wire::{self, encode_batched, WireError, BATCH_BYTES, MAX_FRAME};
use chorus_tasks::proto::*;
use proptest::prelude::*;

use crate::proto_corpus;

fn cases() -> u32 {
    std::env::var("CHORUS_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

/// The encoded corpus: (message type, frame) for every sample.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    fn frames<M: Message>(ms: Vec<M>) -> Vec<(&'static str, Vec<u8>)> {
        ms.iter().map(|m| (M::NAME, wire::encode(m))).collect()
    }
    let (fo, to) = proto_corpus::observer();
    let (dq, dr) = proto_corpus::data();
    let mut all = frames(proto_corpus::from_worker());
    all.extend(frames(proto_corpus::to_worker()));
    all.extend(frames(proto_corpus::from_client()));
    all.extend(frames(proto_corpus::to_client()));
    all.extend(frames(fo));
    all.extend(frames(to));
    all.extend(frames(dq));
    all.extend(frames(dr));
    all
}

/// Reads `bytes` as frames of every message type; any outcome but a panic is fine.
fn read_as_everything(bytes: &[u8]) {
    fn read_all<M: Message>(bytes: &[u8]) {
        let mut r = bytes;
        let mut buf = Vec::new();
        for _ in 0..64 {
            if wire::read::<M>(&mut r, &mut buf).is_err() {
                return;
            }
            // A frame's buffer grows with the bytes that arrived, never by its claim.
            assert!(buf.capacity() <= (2 << 20) + 2 * bytes.len());
        }
    }
    read_all::<FromWorker>(bytes);
    read_all::<ToWorker>(bytes);
    read_all::<FromClient>(bytes);
    read_all::<ToClient>(bytes);
    read_all::<FromObserver>(bytes);
    read_all::<ToObserver>(bytes);
    read_all::<DataRequest>(bytes);
    read_all::<DataReply>(bytes);
}

#[test]
fn every_corpus_message_round_trips_and_is_refused_by_the_other_roles() {
    for (name, frame) in corpus() {
        let body = &frame[4..];
        let again = match body[0] {
            t if t == FromWorker::TAG => wire::encode(&wire::decode::<FromWorker>(body).unwrap()),
            t if t == ToWorker::TAG => wire::encode(&wire::decode::<ToWorker>(body).unwrap()),
            t if t == FromClient::TAG => wire::encode(&wire::decode::<FromClient>(body).unwrap()),
            t if t == ToClient::TAG => wire::encode(&wire::decode::<ToClient>(body).unwrap()),
            t if t == FromObserver::TAG => wire::encode(&wire::decode::<FromObserver>(body).unwrap()),
            t if t == ToObserver::TAG => wire::encode(&wire::decode::<ToObserver>(body).unwrap()),
            t if t == DataRequest::TAG => wire::encode(&wire::decode::<DataRequest>(body).unwrap()),
            t if t == DataReply::TAG => wire::encode(&wire::decode::<DataReply>(body).unwrap()),
            t => panic!("{name}: unknown tag {t}"),
        };
        assert_eq!(again, frame, "{name} re-encodes to the same bytes");
        if body[0] != FromWorker::TAG {
            match wire::decode::<FromWorker>(body) {
                Err(WireError::WrongRole { expected, found }) => {
                    assert_eq!((expected, found), (FromWorker::NAME, name));
                }
                other => panic!("{name} read as a worker's message: {other:?}"),
            }
        }
    }
}

#[test]
fn a_length_prefix_over_the_limit_is_refused_before_anything_is_allocated() {
    let mut frame = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&[FromClient::TAG, 0]);
    let mut buf = Vec::new();
    match wire::read::<FromClient>(&mut &frame[..], &mut buf) {
        Err(WireError::TooLarge { len }) => assert_eq!(len, MAX_FRAME + 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(buf.capacity(), 0);
    // A length that lies about the bytes that follow costs only what arrived.
    let mut short = (MAX_FRAME as u32).to_be_bytes().to_vec();
    short.extend_from_slice(&[FromClient::TAG, 1, 2, 3]);
    assert!(matches!(wire::read::<FromClient>(&mut &short[..], &mut buf), Err(WireError::Io(_))));
    assert!(buf.capacity() <= 1 << 20, "{}", buf.capacity());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_corpus_frames_never_panic_a_decoder(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        junk in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let corpus = corpus();
        let (_, frame) = &corpus[pick.index(corpus.len())];
        let mut bytes = frame.clone();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        bytes.extend_from_slice(&junk);
        read_as_everything(&bytes);
    }

    #[test]
    fn random_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        read_as_everything(&bytes);
    }

    #[test]
    fn random_bodies_behind_valid_tags_never_panic(tag in prop::sample::select(vec![
        FromWorker::TAG, ToWorker::TAG, FromClient::TAG, ToClient::TAG,
        FromObserver::TAG, ToObserver::TAG, DataRequest::TAG, DataReply::TAG,
    ]), body in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        frame.push(tag);
        frame.extend_from_slice(&body);
        read_as_everything(&frame);
    }

    /// `encode_batched` against the reference: one message per item.
    #[test]
    fn batches_split_into_bounded_frames_of_the_same_items_in_order(
        sizes in prop::collection::vec(0usize..5000, 0..200),
        limit in 1usize..20_000,
    ) {
        let items: Vec<Finished> = sizes
            .iter()
            .enumerate()
            .map(|(i, n)| Finished {
                id: TaskId(i as u64),
                instance: Instance(1),
                size: *n as u64,
                inline: Some(std::sync::Arc::new(vec![i as u8; *n])),
                timing: Default::default(),
            })
            .collect();
        let mut out = Vec::new();
        let too_large = encode_batched(&items, FromWorker::Finished, &mut out, limit);
        prop_assert!(too_large.is_empty());
        let mut r = &out[..];
        let mut buf = Vec::new();
        let mut back = Vec::new();
        loop {
            match wire::read::<FromWorker>(&mut r, &mut buf) {
                Ok(FromWorker::Finished(part)) => {
                    prop_assert!(!part.is_empty());
                    // A frame passes the limit only by its last item.
                    let one = part.last().map_or(0, |f| f.size as usize + 32);
                    prop_assert!(buf.len() <= limit + one + 32, "frame {} for limit {limit}", buf.len());
                    back.extend(part);
                }
                Err(WireError::Closed) => break,
                other => prop_assert!(false, "{:?}", other),
            }
        }
        let ids: Vec<u64> = back.iter().map(|f| f.id.0).collect();
        prop_assert_eq!(ids, (0..items.len() as u64).collect::<Vec<_>>());
        prop_assert!(back.iter().zip(&items).all(|(a, b)| a.inline == b.inline));
    }
}

#[test]
fn the_default_batch_size_is_far_below_the_frame_limit() {
    const { assert!(BATCH_BYTES * 16 <= MAX_FRAME) };
}
