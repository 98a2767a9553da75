//! Errors for people: a panic names the function, the partition and the element; what
//! cannot work fails before anything runs; a key too large for one task says what to
//! do instead.

use chorus_bag::{self as db, func};
use chorus_tasks::FailureKind;

use crate::support::{builder, cluster};

fn task_error(e: &db::Error) -> &chorus_tasks::TaskError {
    match e {
        db::Error::Tasks(chorus_tasks::Error::Task(t)) => t,
        other => panic!("a task error, not {other:?}"),
    }
}

#[test]
fn a_panic_in_a_function_names_it_with_its_partition_and_element() {
    let cluster = cluster(2);
    let client = cluster.client();
    let bag = db::from_sequence(&client, vec![5i64, 4, 0, 3], 2).unwrap();
    let err = bag.map(func!(|x: i64| 100 / x)).compute().unwrap_err();
    let t = task_error(&err);
    assert_eq!(t.kind, FailureKind::Panic);
    for part in ["100 / x", "bag_errors.rs", "element 0 of partition 1", "divide by zero"] {
        assert!(t.message.contains(part), "{part:?} in {}", t.message);
    }
    // In a filter of a fused chain, and in a fold step.
    let err = bag.map(func!(|x: i64| x - 4)).filter(func!(|x: &i64| 10 / x > 0)).count().unwrap_err();
    assert!(task_error(&err).message.contains("element 1 of partition 0"), "{}", task_error(&err).message);
    let err = bag.fold(0i64, func!(|a: i64, x: i64| a + 1 / x), func!(|a: i64, b: i64| a + b)).unwrap_err();
    assert!(task_error(&err).message.contains("element 0 of partition 1"), "{}", task_error(&err).message);
    // The cluster goes on.
    assert_eq!(bag.count().unwrap(), 4);
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
struct Unregistered {
    a: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Visit {
    user: u32,
    page: String,
}

chorus_bag::element!(Visit);

#[test]
fn an_element_type_no_registration_made_is_named_before_any_task() {
    let cluster = cluster(1);
    let client = cluster.client();
    let bag = db::from_sequence(&client, vec![Unregistered { a: 1 }, Unregistered { a: 1 }], 2).unwrap();
    // Counting and computing need nothing of the type.
    assert_eq!(bag.count().unwrap(), 2);
    assert_eq!(bag.compute().unwrap().len(), 2);
    let err = bag.distinct().unwrap_err();
    assert!(matches!(&err, db::Error::NotRegistered { type_name, .. } if type_name.ends_with("Unregistered")), "{err:?}");
    assert!(err.to_string().contains("element!(Unregistered)"), "{err}");

    let visits = vec![Visit { user: 2, page: "b".into() }, Visit { user: 1, page: "a".into() }, Visit { user: 2, page: "b".into() }];
    let bag = db::from_sequence(&client, visits.clone(), 2).unwrap();
    assert_eq!(bag.distinct().unwrap().compute().unwrap(), visits[..2].to_vec());
    assert_eq!(bag.max().unwrap(), visits[0]);
}

#[test]
fn bad_arguments_are_errors_of_their_own() {
    let cluster = cluster(1);
    let client = cluster.client();
    let bag = db::range(&client, 10, 2).unwrap();
    assert!(matches!(bag.random_sample(1.5, 0), Err(db::Error::InvalidArgument(_))));
    assert!(matches!(bag.repartition(0), Err(db::Error::InvalidArgument(_))));
    assert!(matches!(db::from_sequence(&client, vec![1u8], 0), Err(db::Error::InvalidArgument(_))));
    assert!(matches!(bag.zip(&db::range(&client, 10, 3).unwrap()), Err(db::Error::InvalidArgument(_))));
    // Same partitions, not as many elements: the task says which partition.
    let uneven = bag.zip(&db::range(&client, 12, 2).unwrap()).unwrap();
    let err = uneven.compute().unwrap_err();
    assert!(task_error(&err).message.contains("zip: partition 0 has 5 elements"), "{}", task_error(&err).message);
    let empty = bag.filter(func!(|x: &u64| *x > 100));
    assert!(matches!(empty.max(), Err(db::Error::Empty { .. })));
    assert_eq!(empty.sum().unwrap(), 0);
    let overflow = db::from_sequence(&client, vec![i8::MAX, 1], 2).unwrap();
    assert!(matches!(overflow.sum(), Err(db::Error::Overflow { .. })));
}

#[test]
fn a_key_too_large_for_one_task_says_to_use_fold_by() {
    // One result may take 100 kB on these workers; the values of one key come to more.
    let cluster = builder(2).env("CHORUS_MAX_OBJECT", "100000").start().unwrap();
    let client = cluster.client();
    let bag = db::range(&client, 40_000, 20).unwrap();
    let grouped = bag.group_by(func!(|_x: &u64| 0u8));
    let err = grouped.count().unwrap_err();
    let t = task_error(&err);
    assert!(t.message.contains("group_by") && t.message.contains("fold_by") && t.message.contains("CHORUS_MAX_OBJECT"), "{}", t.message);
    // What the message suggests works.
    let folded = bag.fold_by(func!(|_x: &u64| 0u8), func!(|n: u64, _x: u64| n + 1), 0u64, func!(|a: u64, b: u64| a + b)).unwrap();
    assert_eq!(folded.compute().unwrap(), vec![(0u8, 40_000u64)]);
}
