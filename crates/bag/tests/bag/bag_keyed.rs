//! MapReduce by key: `fold_by`, `reduce_by_key` and the `group_by` shuffle against the
//! same grouping of a `Vec`.

use std::collections::{BTreeMap, HashSet};

use chorus_bag::{self as db, func};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::bag_ops::{first_seen, on_clusters};

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(e.to_string()))
}

#[test]
fn fold_by_and_reduce_by_key_match_a_vec() {
    on_clusters("by key", |client, v, n| {
        let bag = ok(db::from_sequence(client, v.clone(), n))?;
        let keys = first_seen(v.iter().map(|x| x.rem_euclid(5)));
        let sums: Vec<(i64, i64)> = keys.iter().map(|&k| (k, v.iter().filter(|x| x.rem_euclid(5) == k).sum())).collect();

        let folded = ok(bag.fold_by(func!(|x: &i64| x.rem_euclid(5)), func!(|acc: i64, x: i64| acc + x), 0i64, func!(|a: i64, b: i64| a + b)))?;
        prop_assert_eq!(folded.npartitions(), 1);
        prop_assert_eq!(ok(folded.compute())?, sums.clone());

        // An accumulator of another type than the elements: the values seen, as text.
        let texts = ok(bag.fold_by(
            func!(|x: &i64| x.rem_euclid(5)),
            func!(|acc: String, x: i64| format!("{acc}{x},")),
            String::new(),
            func!(|a: String, b: String| a + &b),
        ))?;
        let expect: Vec<(i64, String)> = keys.iter().map(|&k| (k, v.iter().filter(|x| x.rem_euclid(5) == k).map(|x| format!("{x},")).collect())).collect();
        prop_assert_eq!(ok(texts.compute())?, expect);

        let pairs = bag.map(func!(|x: i64| (x.rem_euclid(5), x)));
        prop_assert_eq!(ok(ok(pairs.reduce_by_key(func!(|a: i64, b: i64| a + b)))?.compute())?, sums);
        Ok(())
    });
}

#[test]
fn group_by_shuffles_every_element_to_the_one_partition_of_its_key() {
    on_clusters("group_by", |client, v, n| {
        let bag = ok(db::from_sequence(client, v.clone(), n))?;
        let grouped = bag.group_by(func!(|x: &i64| x.rem_euclid(7)));
        prop_assert_eq!(grouped.npartitions(), n);
        let parts: Vec<Vec<(i64, Vec<i64>)>> = ok(grouped.to_futures())?.iter().map(|f| f.result().unwrap()).collect();
        let mut seen = HashSet::new();
        for p in &parts {
            for (k, _) in p {
                prop_assert!(seen.insert(*k), "key {} in two partitions", k);
            }
        }
        let got: BTreeMap<i64, Vec<i64>> = parts.into_iter().flatten().collect();
        let mut expect: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for &x in &v {
            expect.entry(x.rem_euclid(7)).or_default().push(x);
        }
        prop_assert_eq!(got, expect);

        // What comes out of a shuffle goes on: the size of each group.
        let sizes = grouped.map(func!(|(k, xs): (i64, Vec<i64>)| (k, xs.len() as u64)));
        let mut sizes = ok(sizes.compute())?;
        sizes.sort();
        let mut expect: Vec<(i64, u64)> = first_seen(v.iter().map(|x| x.rem_euclid(7))).into_iter().map(|k| (k, v.iter().filter(|x| x.rem_euclid(7) == k).count() as u64)).collect();
        expect.sort();
        prop_assert_eq!(sizes, expect);
        Ok(())
    });
}

#[test]
fn the_word_count_of_mapreduce_in_its_three_steps() {
    let cluster = crate::support::cluster(2);
    let client = cluster.client();
    let lines = ["the cat sat", "on the mat", "the end"];
    let bag = db::from_sequence(&client, lines.iter().map(|s| s.to_string()), 2).unwrap();
    // Map to (word, 1), shuffle by word, reduce each word's ones.
    let ones = bag.flat_map(func!(|line: String| line.split_whitespace().map(|w| (w.to_string(), 1u64)).collect::<Vec<_>>()));
    let grouped = ones.group_by(func!(|p: &(String, u64)| p.0.clone()));
    let mut counts = grouped.map(func!(|(w, ones): (String, Vec<(String, u64)>)| (w, ones.len() as u64))).compute().unwrap();
    counts.sort();
    let expect: Vec<(String, u64)> = [("cat", 1), ("end", 1), ("mat", 1), ("on", 1), ("sat", 1), ("the", 3)].iter().map(|(w, n)| (w.to_string(), *n)).collect();
    assert_eq!(counts, expect);
    let mut by_fold = ones.reduce_by_key(func!(|a: u64, b: u64| a + b)).unwrap().compute().unwrap();
    by_fold.sort();
    assert_eq!(by_fold, expect);
}
