//! All 22 TPC-H queries at scale factor 0.01 on 1, 2 and 3 ranks, equal to single-process
//! DataFusion.

use std::path::Path;

use chorus_datagen::tpch;
use chorus_frame::datafusion::prelude::ParquetReadOptions;
use chorus_frame::Context;

use crate::support::{block_on, on_ranks, reference_session, rows};

fn register(ctx: &Context, dir: &Path) {
    for table in tpch::TABLES {
        ctx.register_parquet(table, dir.join(table)).unwrap();
    }
}

fn reference(dir: &Path) -> Vec<Vec<String>> {
    let ctx = reference_session();
    block_on(async {
        for table in tpch::TABLES {
            ctx.register_parquet(table, dir.join(table).to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
        }
        let mut out = Vec::new();
        for n in 1..=22 {
            let batches = ctx.sql(tpch::query(n).unwrap()).await.unwrap().collect().await.unwrap();
            out.push(rows(&batches, tpch::is_ordered(n)));
        }
        out
    })
}

#[test]
fn all_22_tpch_queries_match_single_process_datafusion_on_1_2_and_3_ranks() {
    let dir = tempfile::tempdir().unwrap();
    tpch::write_tables(dir.path(), 0.01, 3).unwrap();
    let expected = reference(dir.path());
    assert!(expected.iter().filter(|r| !r.is_empty()).count() >= 20, "the queries select rows at SF 0.01");
    for ranks in 1..=3 {
        let got = on_ranks(ranks, 1, |ctx| {
            register(ctx, dir.path());
            (1..=22).map(|n| rows(&ctx.sql(tpch::query(n).unwrap()).unwrap().collect().unwrap(), tpch::is_ordered(n))).collect::<Vec<_>>()
        });
        for (n, (got, want)) in got[0].iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "TPC-H query {} on {ranks} ranks", n + 1);
        }
    }
}
