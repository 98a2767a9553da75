//! Shuffles larger than the exchange window stream through it.

use chorus_frame::FrameOptions;

use crate::support::{on_ranks_with, rows};

/// 200,000 rows of `id`, a key that each value takes for exactly two ids, and a 60-byte
/// payload: 15 MB, many exchange windows.
fn write_wide(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("wide.csv");
    let mut text = String::from("id,k,payload\n");
    for i in 0..200_000u64 {
        text.push_str(&format!("{i},{},p{:0>59}\n", (i * 7919) % 100_000, i));
    }
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_shuffle_larger_than_the_exchange_window_completes_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_wide(dir.path());
    let window = 1 << 20;
    let options = FrameOptions { threads_per_rank: Some(1), exchange_window: window, ..FrameOptions::default() };
    let results = on_ranks_with(2, options, |ctx| {
        ctx.register_csv("w", &path, chorus_frame::CsvOptions::default()).unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0").unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0").unwrap();
        let joined = ctx
            .sql("SELECT count(*) AS n, sum(length(a.payload) + length(b.payload)) AS bytes FROM w a JOIN w b ON a.k = b.k AND a.id <> b.id")
            .unwrap();
        (rows(&joined.collect().unwrap(), false), ctx.last_exchange_stats())
    });
    // k = i·7919 mod 100000 takes each value for exactly two ids in 0..200000.
    assert_eq!(results[0].0, vec!["200000 | 24000000".to_string()]);
    for (rank, (_, stats)) in results.iter().enumerate() {
        assert!(stats.bytes_sent > 4 * window, "rank {rank} shuffled only {} bytes", stats.bytes_sent);
        // Two shuffled inputs and the final gather, one stream each to the other rank.
        assert!(stats.peak_in_flight_bytes <= 3 * window, "rank {rank}: {stats:?}");
    }
}

/// A bug fixed: string view columns cut by the hash partitioner still pointed into the
/// whole input batch's strings, and Arrow IPC sent those whole, once per piece.
#[test]
fn shuffled_string_views_send_only_their_own_bytes() {
    use std::sync::Arc;

    use chorus_frame::datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use chorus_frame::datafusion::arrow::datatypes::{DataType, Field, Schema};

    let dir = tempfile::tempdir().unwrap();
    let n = 40_000i64;
    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false), Field::new("s", DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())),
            Arc::new(StringArray::from((0..n).map(|i| format!("{i:0>100}")).collect::<Vec<_>>())),
        ],
    )
    .unwrap();
    let path = dir.path().join("strings.parquet");
    let mut writer = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let string_bytes = n as usize * 100;
    let results = on_ranks_with(2, FrameOptions { threads_per_rank: Some(2), ..FrameOptions::default() }, |ctx| {
        ctx.register_parquet("t", &path).unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0").unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0").unwrap();
        let joined = ctx.sql("SELECT count(*), sum(length(a.s)) FROM t a JOIN t b ON a.k = b.k AND a.s = b.s").unwrap();
        (rows(&joined.collect().unwrap(), false), ctx.last_exchange_stats())
    });
    assert_eq!(results[0].0, vec![format!("{n} | {string_bytes}")]);
    for (rank, (_, stats)) in results.iter().enumerate() {
        // Half of each side crosses to the other rank: about one copy of the strings.
        assert!(stats.bytes_sent < 2 * string_bytes, "rank {rank} sent {} bytes for {string_bytes} bytes of strings", stats.bytes_sent);
    }
}

/// A bug fixed: a batch with rows but no columns (what `count(*)` reads) lost its rows
/// when it crossed to another rank, failing the query or, under a limit, leaving an
/// unread message behind.
#[test]
fn batches_without_columns_keep_their_rows_across_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let facts: Vec<crate::frame_ops::Row> = (0..60).map(|i| (Some(i % 5), Some(i), None, None)).collect();
    crate::frame_ops::write_tables(dir.path(), &facts);
    let counts = crate::support::on_ranks(3, 2, |ctx| {
        ctx.register_parquet("t", dir.path().join("t")).unwrap();
        let all = ctx.sql("SELECT count(*) FROM (SELECT * FROM t LIMIT 1000)").unwrap();
        let limited = ctx.sql("SELECT count(*) FROM (SELECT * FROM t LIMIT 5)").unwrap();
        (rows(&all.collect_on_every_rank().unwrap(), false), rows(&limited.collect_on_every_rank().unwrap(), false))
        // on_ranks then checks that no message was left unread.
    });
    for (rank, (all, limited)) in counts.iter().enumerate() {
        assert_eq!((all, limited), (&vec!["60".to_string()], &vec!["5".to_string()]), "rank {rank}");
    }
}

/// Sort-merge joins (`prefer_hash_join = false`) read two shuffles per partition, each
/// larger than the window, in the order of their keys.
#[test]
fn sort_merge_joins_over_shuffles_larger_than_the_window_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_wide(dir.path());
    let window = 1 << 20;
    let options = FrameOptions {
        threads_per_rank: Some(2),
        exchange_window: window,
        spill_dir: Some(dir.path().join("spill")),
        ..FrameOptions::default()
    };
    let results = on_ranks_with(2, options, |ctx| {
        ctx.register_csv("w", &path, chorus_frame::CsvOptions::default()).unwrap();
        ctx.sql("SET datafusion.optimizer.prefer_hash_join = false").unwrap();
        let joined = ctx
            .sql("SELECT count(*) AS n, sum(length(a.payload) + length(b.payload)) AS bytes FROM w a JOIN w b ON a.k = b.k AND a.id <> b.id")
            .unwrap();
        let plan = joined.explain().unwrap();
        (rows(&joined.collect().unwrap(), false), plan)
    });
    assert!(results[0].1.contains("SortMergeJoin"), "the plan joins by sort-merge:\n{}", results[0].1);
    assert_eq!(results[0].0, vec!["200000 | 24000000".to_string()]);
}

/// A bug fixed: a `LIMIT` above a shuffle let the shuffle's producers run to the end of
/// their input after the limit had its rows (every batch still sent, and drained by the
/// receiver). Now the receiver of a stream whose consumer has gone tells its sender,
/// which stops producing once nothing it feeds is read.
#[test]
fn a_limit_above_a_shuffle_stops_the_shuffles_producers() {
    let dir = tempfile::tempdir().unwrap();
    // 1,000,000 rows of `id` and a key that each value takes for exactly two ids.
    let path = dir.path().join("narrow.csv");
    let mut text = String::from("id,k\n");
    for i in 0..1_000_000u64 {
        text.push_str(&format!("{i},{}\n", (i * 7919) % 500_000));
    }
    std::fs::write(&path, text).unwrap();
    let options = FrameOptions { threads_per_rank: Some(1), exchange_window: 256 << 10, ..FrameOptions::default() };
    let results = on_ranks_with(2, options, |ctx| {
        ctx.register_csv("t", &path, chorus_frame::CsvOptions::default()).unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0").unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0").unwrap();
        // The build side is 1,000 rows; the probe side, all 1,000,000, is shuffled by key
        // in batches of 8,192 rows, and one row in 500 finds a match.
        let limited =
            ctx.sql("SELECT a.id FROM (SELECT k FROM t WHERE id < 1000) b JOIN t a ON a.k = b.k LIMIT 5").unwrap();
        let got = limited.collect().unwrap().iter().map(|b| b.num_rows()).sum::<usize>();
        let stats = ctx.last_exchange_stats();
        // The job goes on: the next query on the same ranks sees all the rows.
        let all = rows(&ctx.sql("SELECT count(*) FROM t").unwrap().collect().unwrap(), false);
        (got, stats, all)
    });
    assert_eq!(results[0].0, 5);
    assert_eq!(results[0].2, vec!["1000000".to_string()]);
    for (rank, (_, stats, _)) in results.iter().enumerate() {
        // The whole probe side crosses in 26 batches from each rank.
        assert!(stats.batches_sent < 12, "rank {rank} sent {} batches after the limit had its rows", stats.batches_sent);
    }
}
