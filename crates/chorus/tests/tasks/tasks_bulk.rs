//! Bulk data: arguments and results of any size, raw bytes, the size limit, and the
//! driver's store for large arguments.

use std::time::{Duration, Instant};

use chorus::{FailureKind, PodVec};

use crate::support::{builder, cluster, inc};

/// The bytes of a test pattern that repeats every `period` bytes.
fn pattern(period: usize) -> Vec<u8> {
    (0..period).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Whether `v` is `len` bytes of [`pattern`] (checked with memcmp, fast in debug builds).
fn is_pattern(v: &[u8], period: usize, len: usize) -> bool {
    let p = pattern(period);
    v.len() == len && v.chunks(period).all(|c| c == &p[..c.len()])
}

const PERIOD: usize = 1 << 20;

#[chorus::remote]
fn check_bytes(v: Vec<u8>, len: usize) -> bool {
    is_pattern(&v, PERIOD, len)
}

#[chorus::remote]
fn make_bytes(len: usize) -> Vec<u8> {
    let mut v = pattern(PERIOD).repeat(len.div_ceil(PERIOD));
    v.truncate(len);
    v
}

#[chorus::remote]
fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

#[chorus::remote]
fn sum_f64(v: Vec<f64>) -> f64 {
    v.iter().sum()
}

#[chorus::remote]
fn points_x(v: PodVec<[f32; 2]>) -> Vec<f32> {
    v.0.iter().map(|p| p[0]).collect()
}

fn make_local(len: usize) -> Vec<u8> {
    let mut v = pattern(PERIOD).repeat(len.div_ceil(PERIOD));
    v.truncate(len);
    v
}

#[test]
fn arguments_and_results_of_100_mb_and_1_gb_arrive_whole() {
    let c = cluster(2);
    let client = c.client();
    for len in [100 << 20, (1 << 30) + 12345] {
        let ok = client.submit(check_bytes, (make_local(len), len)).result().unwrap();
        assert!(ok, "a {len}-byte argument arrives whole");
        let back = client.submit(make_bytes, (len,)).result().unwrap();
        assert!(is_pattern(&back, PERIOD, len), "a {len}-byte result arrives whole");
        // Worker to worker: a result used as the next task's input.
        let made = client.submit(make_bytes, (len,));
        assert_eq!(client.submit(len_of, (&made,)).result().unwrap(), len);
    }
    assert_eq!(client.submit(inc, (1,)).result().unwrap(), 2);
}

#[test]
fn vectors_of_numbers_and_plain_types_travel_as_their_bytes() {
    let c = cluster(2);
    let client = c.client();
    let floats: Vec<f64> = (0..1_000_000).map(|i| i as f64 * 0.5).collect();
    let want: f64 = floats.iter().sum();
    assert_eq!(client.submit(sum_f64, (floats.clone(),)).result().unwrap(), want);
    let points = PodVec((0..1000).map(|i| [i as f32, -1.0]).collect());
    assert_eq!(client.submit(points_x, (points,)).result().unwrap(), (0..1000).map(|i| i as f32).collect::<Vec<_>>());
    let bytes = make_local(3 << 20);
    let futs = client.scatter(vec![bytes.clone(), Vec::new()]).unwrap();
    assert_eq!(client.gather(&futs).unwrap(), vec![bytes, Vec::new()]);
    let shared = client.scatter(vec![floats]).unwrap();
    assert_eq!(client.submit(sum_f64, (&shared[0],)).result().unwrap(), want);
    // 8 MB of f64 on the wire are 8 MB: no element-wise encoding.
    let before = client.bytes_received();
    assert_eq!(shared[0].result().unwrap().len(), 1_000_000);
    assert_eq!(client.bytes_received() - before, 8_000_000);
}

#[test]
fn a_value_over_the_limit_fails_its_own_future_and_the_client_keeps_working() {
    let c = builder(2).max_object(8 << 20).start().unwrap();
    let client = c.client();
    let too_large = |e: chorus::Error| match e {
        chorus::Error::Task(t) => {
            assert_eq!(t.kind, FailureKind::TooLarge, "{t}");
            t.to_string()
        }
        other => panic!("expected a task error, got {other}"),
    };
    let arg = too_large(client.submit(len_of, (vec![0u8; 16 << 20],)).result().unwrap_err());
    assert!(arg.contains("len_of") && arg.contains("16.0 MiB") && arg.contains("8.0 MiB"), "{arg}");
    assert!(arg.contains("CHORUS_MAX_OBJECT"), "{arg}");
    let result = too_large(client.submit(make_bytes, (16 << 20,)).result().unwrap_err());
    assert!(result.contains("make_bytes") && result.contains("its result") && result.contains("16.0 MiB"), "{result}");
    let futs = client.scatter(vec![vec![1u8; 16 << 20], vec![2u8; 10]]).unwrap();
    assert!(too_large(futs[0].result().unwrap_err()).contains("16.0 MiB"));
    assert_eq!(futs[1].result().unwrap(), vec![2u8; 10], "only the large value fails");
    // Just under the limit works, and the client keeps working.
    assert_eq!(client.submit(len_of, (vec![0u8; 8 << 20],)).result().unwrap(), 8 << 20);
    let futs = client.map(inc, 0..100i64);
    assert_eq!(client.gather(&futs).unwrap(), (1..=100).collect::<Vec<_>>());
}

#[test]
fn large_arguments_stay_in_the_driver_until_their_task_is_forgotten() {
    let c = cluster(2);
    let client = c.client();
    let small = client.submit(len_of, (vec![1u8; 1000],));
    assert_eq!(small.result().unwrap(), 1000);
    assert_eq!(client.stored_arguments(), 0, "small arguments travel with the task");
    let big = client.submit(len_of, (vec![1u8; 4 << 20],));
    assert_eq!(client.stored_arguments(), 1);
    assert_eq!(big.result().unwrap(), 4 << 20);
    let before = c.scheduler_bytes_received();
    let futs: Vec<_> = (0..6).map(|i| client.submit(len_of, (vec![i as u8; 2 << 20],))).collect();
    assert_eq!(client.gather(&futs).unwrap(), vec![2 << 20; 6]);
    assert!(c.scheduler_bytes_received() - before < 64 << 10, "argument bytes bypass the scheduler");
    // Run on every worker, the argument is stored once.
    let lens = client.run_on_all(len_of, (vec![3u8; 3 << 20],)).unwrap();
    assert!(lens.iter().all(|(_, n)| *n == 3 << 20));
    drop((big, futs));
    let t = Instant::now();
    while client.stored_arguments() > 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "{} stored arguments were never released", client.stored_arguments());
        std::thread::sleep(Duration::from_millis(10));
    }
}
