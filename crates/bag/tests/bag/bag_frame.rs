//! Bags to DataFrames and back, through the Parquet files the workers write (feature
//! `frame`).

use chorus_bag::{self as db, func};
use chorus_frame::Context;

use crate::support::{cluster, scratch};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Sale {
    product: String,
    amount: f64,
    units: i64,
}

#[test]
fn a_bag_of_structs_is_a_dataframe_and_a_query_result_is_a_bag() {
    let cluster = cluster(2);
    let client = cluster.client();
    let ctx = Context::on_cluster(&client).unwrap();
    let dir = scratch("frame");
    let sales = db::range(&client, 1000, 4).unwrap().map(func!(|i: u64| Sale { product: format!("p{}", i % 3), amount: i as f64 / 2.0, units: (i % 7) as i64 }));
    let df = sales.to_dataframe(&ctx, dir.join("sales")).unwrap();
    assert_eq!(df.count().unwrap(), 1000);
    ctx.register("sales", &df).unwrap();
    let totals = ctx.sql("SELECT product, sum(units) AS units, count(*) AS n FROM sales GROUP BY product ORDER BY product").unwrap();

    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Total {
        product: String,
        units: i64,
        n: i64,
    }
    let back: db::Bag<Total> = db::from_dataframe(&client, &totals, dir.join("totals")).unwrap();
    let mut got = back.map(func!(|t: Total| (t.product, t.units, t.n))).compute().unwrap();
    got.sort();
    let mut expect: Vec<(String, i64, i64)> = (0..3).map(|p| (format!("p{p}"), (0..1000i64).filter(|i| i % 3 == p).map(|i| i % 7).sum(), (0..1000).filter(|i| i % 3 == p).count() as i64)).collect();
    expect.sort();
    assert_eq!(got, expect);

    // Plain numbers are not rows of columns: said before anything runs.
    let numbers = db::range(&client, 10, 2).unwrap();
    assert!(matches!(numbers.to_dataframe(&ctx, dir.join("numbers")), Err(db::Error::InvalidArgument(_))));
}
