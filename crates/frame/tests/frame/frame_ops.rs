//! Every operation, on random tables, equal to single-process DataFusion for 1–4 ranks.

use std::path::Path;
use std::sync::Arc;

use chorus_frame::datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use chorus_frame::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chorus_frame::datafusion::prelude::ParquetReadOptions;
use chorus_frame::prelude::*;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;

use crate::support::{block_on, on_ranks, reference_session, rows};

pub type Row = (Option<i64>, Option<i64>, Option<f64>, Option<String>);

fn fact_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("k", DataType::Int64, true),
        Field::new("x", DataType::Int64, true),
        Field::new("v", DataType::Float64, true),
        Field::new("name", DataType::Utf8, true),
    ]))
}

/// Rows with skewed keys (most rows share key 0) and nulls in every column.
fn fact_rows() -> impl Strategy<Value = Vec<Row>> {
    let key = prop_oneof![6 => Just(Some(0i64)), 3 => (1i64..12).prop_map(Some), 1 => Just(None)];
    let x = prop_oneof![9 => (-50i64..50).prop_map(Some), 1 => Just(None)];
    let v = prop_oneof![9 => (-1000.0f64..1000.0).prop_map(Some), 1 => Just(None)];
    let name = prop_oneof![9 => "[a-e]{1,3}".prop_map(Some), 1 => Just(None)];
    prop::collection::vec((key, x, v, name), 0..400)
}

/// Writes the rows as three Parquet files with small row groups (some files may be
/// empty), and a dimension table of keys 0..8.
pub fn write_tables(dir: &Path, facts: &[Row]) {
    let schema = fact_schema();
    let third = facts.len().div_ceil(3).max(1);
    for (i, chunk) in (0..3).map(|i| (i, facts.iter().enumerate().skip(i * third).take(third).collect::<Vec<_>>())) {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(chunk.iter().map(|(id, _)| *id as i64).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(chunk.iter().map(|(_, r)| r.0).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(chunk.iter().map(|(_, r)| r.1).collect::<Vec<_>>())),
                Arc::new(Float64Array::from(chunk.iter().map(|(_, r)| r.2).collect::<Vec<_>>())),
                Arc::new(StringArray::from(chunk.iter().map(|(_, r)| r.3.clone()).collect::<Vec<_>>())),
            ],
        )
        .unwrap();
        write_parquet(&dir.join(format!("t/part-{i}.parquet")), &batch);
    }
    let dim_schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("label", DataType::Utf8, false),
    ]));
    let dim = RecordBatch::try_new(
        dim_schema,
        vec![
            Arc::new(Int64Array::from((0..8).collect::<Vec<i64>>())),
            Arc::new(StringArray::from((0..8).map(|k| format!("label-{k}")).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    write_parquet(&dir.join("d/part-0.parquet"), &dim);
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(16)).build();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// The queries, and whether their output order is defined.
pub const QUERIES: &[(&str, bool)] = &[
    ("SELECT id, k, x * 2 AS x2, v + 1 AS v1, upper(name) AS n FROM t WHERE x > 0 OR name = 'a'", false),
    (
        "SELECT k, count(*) AS n, count(v) AS nv, sum(x) AS sx, avg(v) AS mv, min(name) AS lo, max(x) AS hi, \
         stddev(v) AS sd, var_samp(v) AS var, count(DISTINCT x) AS dx FROM t GROUP BY k",
        false,
    ),
    ("SELECT count(*), sum(x), avg(v), count(DISTINCT name) FROM t", false),
    ("SELECT name, k, sum(v) FROM t GROUP BY name, k HAVING count(*) > 1", false),
    ("SELECT t.id, t.k, d.label FROM t JOIN d ON t.k = d.k", false),
    ("SELECT t.id, t.k, d.label FROM t LEFT JOIN d ON t.k = d.k", false),
    ("SELECT t.id, d.k, d.label FROM t RIGHT JOIN d ON t.k = d.k", false),
    ("SELECT t.id, d.k, d.label FROM t FULL JOIN d ON t.k = d.k", false),
    ("SELECT d.k, d.label FROM d LEFT SEMI JOIN t ON t.k = d.k", false),
    ("SELECT d.k, d.label FROM d LEFT ANTI JOIN t ON t.k = d.k", false),
    ("SELECT id, k FROM t WHERE k NOT IN (SELECT k FROM d WHERE k > 3)", false),
    ("SELECT a.id, b.id FROM t a JOIN t b ON a.x = b.x AND a.id < b.id WHERE a.k = 1", false),
    ("SELECT a.id, b.id, b.x FROM t a LEFT JOIN t b ON a.x = b.x + 1", false),
    ("SELECT id, x, v FROM t ORDER BY x DESC NULLS LAST, id", true),
    ("SELECT id, name FROM t ORDER BY name NULLS FIRST, id LIMIT 7 OFFSET 2", true),
    ("SELECT DISTINCT k, name FROM t", false),
    ("SELECT k, x FROM t WHERE x > 10 UNION ALL SELECT k, x FROM t WHERE x < -10", false),
    ("SELECT k FROM t UNION SELECT k FROM d", false),
    (
        "SELECT id, k, row_number() OVER (PARTITION BY k ORDER BY id) AS rn, \
         sum(x) OVER (PARTITION BY k) AS sx, lag(v) OVER (PARTITION BY k ORDER BY id) AS prev FROM t",
        false,
    ),
    ("SELECT k, avg(v) AS m FROM t GROUP BY k ORDER BY m DESC NULLS LAST, k LIMIT 3", true),
    ("SELECT count(*) FROM (SELECT * FROM t LIMIT 5)", false),
];

fn reference(dir: &Path, sql: &str, ordered: bool) -> Vec<String> {
    let ctx = reference_session();
    block_on(async {
        ctx.register_parquet("t", dir.join("t").to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
        ctx.register_parquet("d", dir.join("d").to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
        rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap(), ordered)
    })
}

fn check_all_queries(dir: &Path, ranks: usize, threads: usize, shuffle_joins: bool) {
    let expected: Vec<Vec<String>> = QUERIES.iter().map(|(q, ordered)| reference(dir, q, *ordered)).collect();
    let got = on_ranks(ranks, threads, |ctx| {
        ctx.register_parquet("t", dir.join("t")).unwrap();
        ctx.register_parquet("d", dir.join("d")).unwrap();
        if shuffle_joins {
            ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0").unwrap();
            ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0").unwrap();
        }
        QUERIES
            .iter()
            .map(|(q, ordered)| {
                let batches = ctx.sql(q).unwrap().collect().unwrap();
                (rows(&batches, *ordered), batches.is_empty())
            })
            .collect::<Vec<_>>()
    });
    for (rank, results) in got.iter().enumerate() {
        for ((query, _), ((rows, empty), want)) in QUERIES.iter().zip(results.iter().zip(&expected)) {
            if rank == 0 {
                assert_eq!(rows, want, "{ranks} ranks × {threads} threads (shuffle joins: {shuffle_joins}): {query}");
            } else {
                assert!(empty, "rank {rank} of {ranks} got rows of {query}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn every_operation_matches_single_process_datafusion(facts in fact_rows(), ranks in 1usize..=4, threads in 1usize..=2) {
        let dir = tempfile::tempdir().unwrap();
        write_tables(dir.path(), &facts);
        check_all_queries(dir.path(), ranks, threads, false);
    }

    #[test]
    fn shuffled_joins_match_single_process_datafusion(facts in fact_rows(), ranks in 2usize..=4) {
        let dir = tempfile::tempdir().unwrap();
        write_tables(dir.path(), &facts);
        check_all_queries(dir.path(), ranks, 1, true);
    }
}

#[test]
fn empty_tables_on_four_ranks() {
    let dir = tempfile::tempdir().unwrap();
    write_tables(dir.path(), &[]);
    check_all_queries(dir.path(), 4, 1, false);
}

#[test]
fn dataframe_api_matches_sql() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<Row> = (0..300).map(|i| (Some(i % 5), Some(i % 17 - 8), Some(i as f64 * 0.5), Some(format!("n{}", i % 3)))).collect();
    write_tables(dir.path(), &facts);
    let results = on_ranks(3, 1, |ctx| {
        let t = ctx.read_parquet(dir.path().join("t")).unwrap().alias("t").unwrap();
        let d = ctx.read_parquet(dir.path().join("d")).unwrap().alias("d").unwrap();
        let api = t
            .filter(col("x").gt(lit(0))).unwrap()
            .with_column("x2", col("x") * lit(2)).unwrap()
            .join(&d, JoinType::Inner, &["t.k"], &["d.k"], None).unwrap()
            .aggregate(vec![col("label")], vec![sum(col("x2")).alias("s"), count(col("id")).alias("n")]).unwrap()
            .sort(vec![col("label").sort(true, true)]).unwrap();
        ctx.register("t", &t).unwrap();
        ctx.register("d", &d).unwrap();
        let sql = ctx
            .sql("SELECT label, sum(x * 2) AS s, count(id) AS n FROM t JOIN d ON t.k = d.k WHERE x > 0 GROUP BY label ORDER BY label")
            .unwrap();
        (rows(&api.collect().unwrap(), true), rows(&sql.collect().unwrap(), true), api.count().unwrap())
    });
    let (api, sql, count) = &results[0];
    assert_eq!(api, sql);
    assert_eq!(api.len(), 5);
    assert!(results.iter().all(|r| r.2 == *count && *count == 5), "count() is the same on every rank");
}

#[test]
fn collect_on_every_rank_and_distributed_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<Row> = (0..500).map(|i| (Some(i % 7), Some(i), None, None)).collect();
    write_tables(dir.path(), &facts);
    let results = on_ranks(3, 1, |ctx| {
        let t = ctx.read_parquet(dir.path().join("t")).unwrap().select_columns(&["id", "k"]).unwrap();
        let everywhere = t.collect_on_every_rank().unwrap();
        let block = t.collect_distributed().unwrap();
        (rows(&everywhere, false), rows(&block, false))
    });
    let all: Vec<String> = results[0].0.clone();
    assert_eq!(all.len(), 500);
    let mut blocks: Vec<String> = Vec::new();
    for (everywhere, block) in &results {
        assert_eq!(everywhere, &all, "every rank has the whole result");
        assert!(!block.is_empty(), "every rank holds a block of a 3-file scan");
        blocks.extend(block.iter().cloned());
    }
    blocks.sort();
    assert_eq!(blocks, all, "the blocks partition the result");
}

#[test]
fn explain_shows_each_operators_distribution() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<Row> = (0..100).map(|i| (Some(i % 4), Some(i), Some(1.0), None)).collect();
    write_tables(dir.path(), &facts);
    let plans = on_ranks(2, 1, |ctx| {
        ctx.register_parquet("t", dir.path().join("t")).unwrap();
        ctx.sql("SELECT k, avg(v) FROM t GROUP BY k ORDER BY k").unwrap().explain().unwrap()
    });
    let plan = &plans[0];
    assert_eq!(plans[0], plans[1], "every rank plans the same");
    for expected in ["[1D_Block]", "[Hash(k@0)]", "[Single]", "shuffle into 2 partitions", "gather to rank 0"] {
        assert!(plan.contains(expected), "{expected} missing from\n{plan}");
    }
}

/// Each query over the tables `t` and `d` under `dir`: its distributed plan and its rows.
fn plans_and_rows(ctx: &chorus_frame::Context, dir: &Path, queries: &[&str]) -> Vec<(String, Vec<String>)> {
    ctx.register_parquet("t", dir.join("t")).unwrap();
    ctx.register_parquet("d", dir.join("d")).unwrap();
    queries
        .iter()
        .map(|q| {
            let frame = ctx.sql(q).unwrap();
            (frame.explain().unwrap(), rows(&frame.collect().unwrap(), false))
        })
        .collect()
}

/// A bug fixed: a broadcast join that emits unmatched build rows (left, full, semi,
/// anti) kept its whole probe side on rank 0. It is now shuffled by key on both sides;
/// only the joins that cannot be (a `NOT IN`'s null-aware anti join) stay on one rank,
/// and `explain` says why.
#[test]
fn joins_that_emit_unmatched_build_rows_are_shuffled_not_gathered_to_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<Row> = (0..300).map(|i| (Some(i % 11), Some(i), Some(1.0), None)).collect();
    write_tables(dir.path(), &facts);
    let queries = [
        "SELECT d.k, d.label FROM d LEFT ANTI JOIN t ON t.k = d.k",
        "SELECT d.k, d.label FROM d LEFT SEMI JOIN t ON t.k = d.k",
        "SELECT d.k, t.id FROM d LEFT JOIN t ON t.k = d.k",
        "SELECT d.k, t.id FROM d FULL JOIN t ON t.k = d.k",
        "SELECT d.k FROM d WHERE d.k = 1 OR EXISTS (SELECT 1 FROM t WHERE t.k = d.k AND t.x > 200)",
        "SELECT id, k FROM t WHERE k NOT IN (SELECT k FROM d WHERE k > 3)",
    ];
    let expected: Vec<Vec<String>> = queries.iter().map(|q| reference(dir.path(), q, false)).collect();
    let got = on_ranks(2, 2, |ctx| {
        plans_and_rows(ctx, dir.path(), &queries)
    });
    let single = "[Single: needs every probe row in one place]";
    for ((query, want), (plan, rows)) in queries.iter().zip(&expected).zip(&got[0]) {
        assert_eq!(rows, want, "{query}");
        if query.contains("NOT IN") {
            // A null-aware anti join cannot be shuffled by key (one null probe key empties
            // its answer): each rank joins its share of the build rows with every probe row.
            assert!(plan.contains("SplitBuildJoinExec") && !plan.contains(single), "{query}: the build side should be split\n{plan}");
        } else {
            assert!(plan.contains("mode=Partitioned") && !plan.contains(single), "{query}: the join should be shuffled\n{plan}");
        }
    }
}

/// A bug fixed: nested-loop joins that emit unmatched build rows (a left join on an
/// inequality, `EXISTS` and `NOT EXISTS` with one, a full join) ran on rank 0 with the
/// whole probe side. Each rank now joins its share of the build rows with every probe
/// row; a full join also joins the whole build side with its share of the probe rows,
/// for the probe rows nothing matched.
#[test]
fn nested_loop_joins_that_emit_unmatched_build_rows_split_their_build_side() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<Row> = (0..600).map(|i| (Some(i % 11), Some(i), Some(1.0), None)).collect();
    write_tables(dir.path(), &facts);
    // d.k runs 0..8: for k = 7, no t.x exceeds 630, so some build rows match nothing.
    let queries = [
        "SELECT d.k, t.id FROM d LEFT JOIN t ON t.x > d.k * 90",
        "SELECT d.k, d.label FROM d WHERE EXISTS (SELECT 1 FROM t WHERE t.x > d.k * 90)",
        "SELECT d.k FROM d WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.x > d.k * 90)",
        "SELECT d.k, t.id FROM d FULL JOIN t ON t.x > d.k * 90 AND t.x < d.k * 90 + 3",
        "SELECT * FROM d FULL JOIN t ON t.x > d.k * 90 AND t.x < d.k * 90 + 3 AND t.v > 0",
    ];
    let expected: Vec<Vec<String>> = queries.iter().map(|q| reference(dir.path(), q, false)).collect();
    for (ranks, threads) in [(2, 2), (3, 1)] {
        let got = on_ranks(ranks, threads, |ctx| {
            plans_and_rows(ctx, dir.path(), &queries)
        });
        for ((query, want), (plan, rows)) in queries.iter().zip(&expected).zip(&got[0]) {
            assert_eq!(rows, want, "{query} on {ranks} ranks");
            assert!(plan.contains("NestedLoopJoinExec"), "{query}: a nested-loop join\n{plan}");
            let split = plan.contains("SplitBuildJoinExec") && plan.contains("deal rows into");
            assert!(split && !plan.contains("needs every probe row"), "{query}: the build side should be split\n{plan}");
        }
        assert!(expected[0].iter().any(|r| r.starts_with("7 | ")), "a build row that matched nothing: {:?}", &expected[0][..3]);
        assert!(expected[3].iter().any(|r| r.starts_with("NULL | ")), "a probe row that matched nothing: {:?}", &expected[3][..3]);
    }
}

#[test]
fn write_parquet_and_csv_one_file_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<Row> = (0..200).map(|i| (Some(i % 3), Some(i), Some(i as f64), Some("a".into()))).collect();
    write_tables(dir.path(), &facts);
    let out = dir.path().join("out");
    let written = on_ranks(2, 1, |ctx| {
        let t = ctx.read_parquet(dir.path().join("t")).unwrap().filter(col("x").lt(lit(150))).unwrap();
        let parquet = t.write_parquet(out.join("pq")).unwrap();
        let csv = t.write_csv(out.join("csv")).unwrap();
        (parquet, csv)
    });
    assert!(written.iter().all(|(p, c)| !p.is_empty() && !c.is_empty()), "both ranks wrote: {written:?}");
    let back = reference_session();
    let (pq, csv) = block_on(async {
        let pq = back.read_parquet(out.join("pq").to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
        let csv = back
            .read_csv(out.join("csv").to_str().unwrap(), chorus_frame::datafusion::prelude::CsvReadOptions::new())
            .await
            .unwrap();
        (pq.count().await.unwrap(), csv.count().await.unwrap())
    });
    assert_eq!((pq, csv), (150, 150));
}

#[test]
fn a_sorted_result_kept_distributed_is_split_by_key_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<Row> = (0..900).map(|i| (Some(i % 13), Some((i * 7919) % 1000 - 500), None, Some(format!("n{}", i % 5)))).collect();
    write_tables(dir.path(), &facts);
    let blocks = on_ranks(3, 1, |ctx| {
        let t = ctx.read_parquet(dir.path().join("t")).unwrap();
        let sorted = t.sort(vec![col("x").sort(false, true), col("id").sort(true, true)]).unwrap();
        let block = sorted.collect_distributed().unwrap();
        let whole = sorted.collect().unwrap();
        (rows(&block, true), rows(&whole, true))
    });
    let whole = &blocks[0].1;
    assert_eq!(whole.len(), 900);
    // Rank 0's block, then rank 1's, then rank 2's is the whole sorted result.
    let concatenated: Vec<String> = blocks.iter().flat_map(|(block, _)| block.iter().cloned()).collect();
    assert_eq!(&concatenated, whole);
    for (rank, (block, _)) in blocks.iter().enumerate() {
        assert!(block.len() > 150, "rank {rank} holds {} of 900 rows: the ranges are balanced by sampling", block.len());
    }
}

/// Rows that went through `counted(x)`, a function that returns its argument.
static COUNTED_ROWS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn counting_udf() -> chorus_frame::datafusion::logical_expr::ScalarUDF {
    use chorus_frame::datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    create_udf(
        "counted",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = match &args[0] {
                ColumnarValue::Array(a) => a.len() as u64,
                ColumnarValue::Scalar(_) => 1,
            };
            COUNTED_ROWS.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
            Ok(args[0].clone())
        }),
    )
}

#[test]
fn a_sort_kept_distributed_computes_its_input_once() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<Row> = (0..900).map(|i| (Some(i % 13), Some((i * 7919) % 1000 - 500), None, Some(format!("n{}", i % 5)))).collect();
    write_tables(dir.path(), &facts);
    let blocks = on_ranks(2, 2, |ctx| {
        ctx.session().register_udf(counting_udf());
        ctx.register_parquet("t", dir.path().join("t")).unwrap();
        let block = ctx.sql("SELECT counted(x) AS c, id FROM t ORDER BY c, id").unwrap().collect_distributed().unwrap();
        rows(&block, true)
    });
    // Sampling the sort keys did not run the projection a second time.
    assert_eq!(COUNTED_ROWS.load(std::sync::atomic::Ordering::Relaxed), 900, "rows through counted(x) on both ranks");
    let got: Vec<String> = blocks.concat();
    let mut want: Vec<(i64, i64)> = facts.iter().enumerate().map(|(id, r)| (r.1.unwrap(), id as i64)).collect();
    want.sort();
    assert_eq!(got, want.iter().map(|(c, id)| format!("{c} | {id}")).collect::<Vec<_>>());
    // A replicated input (`VALUES`), held by the one rank that keeps its partition.
    let blocks = on_ranks(3, 1, |ctx| {
        let sql = "SELECT column1 AS v FROM (VALUES (3), (1), (2), (5), (4)) ORDER BY v DESC";
        rows(&ctx.sql(sql).unwrap().collect_distributed().unwrap(), true)
    });
    assert_eq!(blocks.concat(), ["5", "4", "3", "2", "1"]);
}
