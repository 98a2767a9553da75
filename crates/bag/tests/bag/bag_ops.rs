//! Every per-element and per-partition operation, and every reduction, against the same
//! operation on a `Vec`, for random data in 1 to 50 partitions (some of them empty) on
//! 1 to 3 workers.

use std::collections::{HashMap, HashSet};

use chorus_bag::{self as db, func, Bag};
use chorus_tasks::Client;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::support::{cases, cluster};

/// Runs `check` on random `(values, npartitions)` on clusters of 1, 2 and 3 workers.
pub fn on_clusters(name: &str, check: fn(&Client, Vec<i64>, usize) -> Result<(), TestCaseError>) {
    let strategy = (prop::collection::vec(-50i64..50, 0..200), 1usize..=50);
    for workers in 1..=3 {
        let cluster = cluster(workers);
        let client = cluster.client();
        let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
        if let Err(e) = runner.run(&strategy, |(v, n)| check(&client, v, n)) {
            panic!("{name} on {workers} workers: {e}");
        }
    }
}

/// The partitions `from_sequence` makes of `v`.
pub fn partitions<T: Clone>(v: &[T], n: usize) -> Vec<Vec<T>> {
    (0..n).map(|j| v[v.len() * j / n..v.len() * (j + 1) / n].to_vec()).collect()
}

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(e.to_string()))
}

/// The distinct values of `v` in order of first appearance.
pub fn first_seen<T: Clone + Eq + std::hash::Hash>(v: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = HashSet::new();
    v.into_iter().filter(|x| seen.insert(x.clone())).collect()
}

#[test]
fn per_element_and_per_partition_operations_match_a_vec() {
    on_clusters("per element", |client, v, n| {
        let bag = ok(db::from_sequence(client, v.clone(), n))?;
        prop_assert_eq!(bag.npartitions(), n);
        prop_assert_eq!(ok(bag.compute())?, v.clone());

        let mapped = bag.map(func!(|x: i64| x * 3 - 1));
        prop_assert_eq!(ok(mapped.compute())?, v.iter().map(|x| x * 3 - 1).collect::<Vec<_>>());
        let kept = bag.filter(func!(|x: &i64| x % 3 == 0));
        prop_assert_eq!(ok(kept.compute())?, v.iter().copied().filter(|x| x % 3 == 0).collect::<Vec<_>>());
        let flat = bag.flat_map(func!(|x: i64| vec![x; x.rem_euclid(3) as usize]));
        prop_assert_eq!(ok(flat.compute())?, v.iter().flat_map(|&x| vec![x; x.rem_euclid(3) as usize]).collect::<Vec<_>>());

        // A chain of stages, fused into one task per partition, to another type.
        let chain = bag.map(func!(|x: i64| x + 100)).filter(func!(|x: &i64| x % 2 == 0)).map(func!(|x: i64| format!("<{x}>")));
        let expect: Vec<String> = v.iter().map(|x| x + 100).filter(|x| x % 2 == 0).map(|x| format!("<{x}>")).collect();
        prop_assert_eq!(ok(chain.compute())?, expect);

        let reversed = bag.map_partitions(func!(|p: Vec<i64>| p.into_iter().rev().collect::<Vec<i64>>()));
        prop_assert_eq!(ok(reversed.compute())?, partitions(&v, n).into_iter().flat_map(|p| p.into_iter().rev()).collect::<Vec<_>>());

        let pairs = bag.map(func!(|x: i64| (x, x * 2)));
        prop_assert_eq!(ok(ok(pairs.pluck::<1>())?.compute())?, v.iter().map(|x| x * 2).collect::<Vec<_>>());
        prop_assert_eq!(ok(ok(pairs.pluck::<0>())?.compute())?, v.clone());

        let negated = bag.map(func!(|x: i64| -x));
        prop_assert_eq!(ok(ok(bag.zip(&negated))?.compute())?, v.iter().map(|&x| (x, -x)).collect::<Vec<_>>());

        for m in [1, n.div_ceil(3), n + 7] {
            let r = ok(bag.repartition(m))?;
            prop_assert_eq!(r.npartitions(), m);
            prop_assert_eq!(ok(r.compute())?, v.clone());
        }

        let k = v.len() / 3 + 1;
        prop_assert_eq!(ok(mapped.take(k))?, v.iter().take(k).map(|x| x * 3 - 1).collect::<Vec<_>>());
        let persisted = ok(mapped.persist())?;
        prop_assert_eq!(ok(persisted.filter(func!(|x: &i64| *x > 0)).compute())?, v.iter().map(|x| x * 3 - 1).filter(|x| *x > 0).collect::<Vec<_>>());

        let table: HashMap<i64, String> = (0..5).map(|k| (k, format!("k{k}"))).collect();
        let joined = ok(bag.join(&table, func!(|x: &i64| x.rem_euclid(7))))?;
        let expect: Vec<(i64, String)> = v.iter().filter_map(|&x| table.get(&x.rem_euclid(7)).map(|s| (x, s.clone()))).collect();
        prop_assert_eq!(ok(joined.compute())?, expect);
        Ok(())
    });
}

#[test]
fn random_sample_is_a_reproducible_subsequence() {
    on_clusters("random_sample", |client, v, n| {
        let bag = ok(db::from_sequence(client, v.clone(), n))?.map(func!(|x: i64| x));
        let indexed = ok(db::from_sequence(client, (0..v.len() as u64).collect::<Vec<_>>(), n))?;
        let a = ok(ok(indexed.random_sample(0.4, 11))?.compute())?;
        prop_assert_eq!(&a, &ok(ok(indexed.random_sample(0.4, 11))?.compute())?);
        prop_assert!(a.windows(2).all(|w| w[0] < w[1]), "a subsequence in order: {:?}", a);
        prop_assert!(ok(ok(bag.random_sample(0.0, 3))?.compute())?.is_empty());
        prop_assert_eq!(ok(ok(bag.random_sample(1.0, 3))?.compute())?, v.clone());
        Ok(())
    });
}

#[test]
fn reductions_match_a_vec() {
    on_clusters("reductions", |client, v, n| {
        let bag = ok(db::from_sequence(client, v.clone(), n))?;
        prop_assert_eq!(ok(bag.count())?, v.len() as u64);
        prop_assert_eq!(ok(bag.sum())?, v.iter().sum::<i64>());
        if v.is_empty() {
            prop_assert!(matches!(bag.min(), Err(db::Error::Empty { .. })), "min of nothing");
            prop_assert!(matches!(bag.mean(), Err(db::Error::Empty { .. })), "mean of nothing");
        } else {
            prop_assert_eq!(ok(bag.min())?, *v.iter().min().unwrap());
            prop_assert_eq!(ok(bag.max())?, *v.iter().max().unwrap());
            let mean = v.iter().sum::<i64>() as f64 / v.len() as f64;
            let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
            prop_assert!((ok(bag.mean())? - mean).abs() < 1e-9);
            prop_assert!((ok(bag.std())? - var.sqrt()).abs() < 1e-9);
        }
        let floats = bag.map(func!(|x: i64| x as f64 / 4.0));
        prop_assert_eq!(ok(floats.sum())?, v.iter().map(|&x| x as f64 / 4.0).sum::<f64>());

        let total = ok(bag.fold(1000i64, func!(|acc: i64, x: i64| acc + x), func!(|a: i64, b: i64| a + b)))?;
        prop_assert_eq!(total, v.iter().sum::<i64>() + 1000 * n as i64);
        let lengths = ok(bag.reduction(func!(|p: Vec<i64>| p.len() as u64), func!(|ls: Vec<u64>| ls)))?;
        prop_assert_eq!(lengths, partitions(&v, n).iter().map(|p| p.len() as u64).collect::<Vec<_>>());

        let freq = ok(ok(bag.frequencies())?.compute())?;
        let expect: Vec<(i64, u64)> = first_seen(v.iter().copied()).into_iter().map(|x| (x, v.iter().filter(|&&y| y == x).count() as u64)).collect();
        prop_assert_eq!(freq, expect);
        prop_assert_eq!(ok(ok(bag.distinct())?.compute())?, first_seen(v.iter().copied()));

        let k = v.len() / 4 + 1;
        let top = ok(bag.topk(k, func!(|x: &i64| x.abs())).compute())?;
        let mut expect: Vec<(usize, i64)> = v.iter().copied().enumerate().collect();
        expect.sort_by(|a, b| b.1.abs().cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        prop_assert_eq!(top, expect.into_iter().take(k).map(|(_, x)| x).collect::<Vec<_>>());

        let positive = bag.map(func!(|x: i64| x > 0));
        prop_assert_eq!(ok(positive.any())?, v.iter().any(|&x| x > 0));
        prop_assert_eq!(ok(positive.all())?, v.iter().all(|&x| x > 0));
        Ok(())
    });
}

#[test]
fn sources_made_on_the_workers_and_from_futures() {
    let cluster = cluster(2);
    let client = cluster.client();
    for (n, k) in [(0u64, 1usize), (1, 3), (10, 3), (1000, 7), (5, 10)] {
        let r = db::range(&client, n, k).unwrap();
        assert_eq!(r.npartitions(), k);
        assert_eq!(r.compute().unwrap(), (0..n).collect::<Vec<_>>(), "range({n}, {k})");
        assert_eq!(r.count().unwrap(), n);
    }
    let futures = client.scatter(vec![vec![1i64, 2], vec![], vec![3]]).unwrap();
    let bag: Bag<i64> = db::from_futures(&client, futures).unwrap();
    assert_eq!(bag.map(func!(|x: i64| x * 10)).compute().unwrap(), vec![10, 20, 30]);
    let back = bag.map(func!(|x: i64| x + 1)).to_futures().unwrap();
    assert_eq!(client.gather(&back).unwrap(), vec![vec![2i64, 3], vec![], vec![4]]);
}

#[test]
fn visualize_draws_one_box_per_step_and_runs_nothing() {
    let cluster = cluster(1);
    let client = cluster.client();
    let words = db::range(&client, 1000, 10)
        .unwrap()
        .map(func!(|x: u64| x % 7))
        .filter(func!(|x: &u64| *x > 0))
        .group_by(func!(|x: &u64| *x));
    let dir = std::env::temp_dir().join(format!("chorus-bag-visualize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bag.dot");
    words.visualize(&path).unwrap();
    let dot = std::fs::read_to_string(&path).unwrap();
    assert!(dot.starts_with("digraph bag"), "{dot}");
    assert!(dot.contains("read or generate × 10"), "{dot}");
    assert!(dot.contains("map bag_ops.rs:") && dot.contains(" → filter bag_ops.rs:"), "the fused stages, by where their closures are: {dot}");
    assert!(dot.contains("group_by shuffle × 10"), "{dot}");
    assert_eq!(dot.matches(" -> ").count(), 2, "{dot}");
    assert_eq!(client.snapshot(Default::default()).unwrap().totals.finished, 0, "visualize runs nothing");
    let e = words.visualize(dir.join("bag.pdf")).unwrap_err();
    assert!(e.to_string().contains(".svg"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
