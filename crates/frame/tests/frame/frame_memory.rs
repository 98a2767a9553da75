//! Queries over data several times their memory pool spill and give the same answers.

use chorus_frame::FrameOptions;

use crate::support::{on_ranks_with, rows};

const MB: u64 = 1 << 20;

/// A CSV of `n` rows: `id`, a key with `n / 2` distinct values, and a 40-byte payload.
fn write_table(path: &std::path::Path, n: u64) -> u64 {
    let mut text = String::from("id,k,payload\n");
    for i in 0..n {
        text.push_str(&format!("{i},{},p{:0>39}\n", (i * 7919) % (n / 2), i));
    }
    std::fs::write(path, &text).unwrap();
    text.len() as u64
}

fn run(path: &std::path::Path, options: FrameOptions, sql: &str) -> Vec<String> {
    let out = on_ranks_with(2, options, |ctx| {
        ctx.register_csv("t", path, chorus_frame::CsvOptions::default()).unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0").unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0").unwrap();
        rows(&ctx.sql(sql).unwrap().collect().unwrap(), false)
    });
    out.into_iter().next().unwrap()
}

#[test]
fn a_group_by_and_a_join_over_four_times_the_pool_spill_and_match_the_unlimited_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let bytes = write_table(&path, 1_600_000);
    let pool = bytes / 4;
    let spill = dir.path().join("spill");
    let limited = FrameOptions {
        threads_per_rank: Some(2),
        memory_limit: Some(pool),
        spill_dir: Some(spill.clone()),
        ..FrameOptions::default()
    };
    let free = FrameOptions { threads_per_rank: Some(2), ..FrameOptions::default() };
    let queries = [
        // 800,000 groups with their payloads: the aggregate's state is past the pool.
        "SELECT k, count(*) AS n, max(payload) AS p, sum(id) AS s FROM t GROUP BY k",
        // A hash join's build side cannot spill: it is a quarter of the rows, and its two
        // columns; the probe side streams the whole table and the aggregate after spills.
        "SELECT a.k, count(*) AS n, sum(a.id + b.id) AS s, max(a.payload) AS p FROM (SELECT k, id FROM t WHERE id % 4 = 0) b JOIN t a ON a.k = b.k GROUP BY a.k",
    ];
    for sql in queries {
        let want = run(&path, free.clone(), sql);
        let got = run(&path, limited.clone(), sql);
        assert_eq!(got.len(), want.len(), "{sql}");
        assert!(got == want, "{sql}: the answers differ under a memory limit of {} MiB", pool / MB);
    }
}

/// Whether any file appears under `dir` while `running` is set, looked for every 5 ms.
fn watch_for_files(dir: std::path::PathBuf, running: std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<bool> {
    fn any_file(dir: &std::path::Path) -> bool {
        std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| e.path().is_file() || any_file(&e.path()))
    }
    std::thread::spawn(move || {
        while running.load(std::sync::atomic::Ordering::SeqCst) {
            if any_file(&dir) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    })
}

/// A collected sort of the table on two ranks of `threads` partitions each, each rank's
/// pool the table's bytes over `limit_fraction`: the ranks spill (a file appears in the
/// spill directory), rank 0 merges, the rows come back in order.
fn sorts_in_order_under_a_pool(threads: usize, limit_fraction: u64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let bytes = write_table(&path, 1_600_000);
    let spill = dir.path().join("spill");
    let limited = FrameOptions {
        threads_per_rank: Some(threads),
        memory_limit: Some(bytes / limit_fraction),
        spill_dir: Some(spill.clone()),
        ..FrameOptions::default()
    };
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = watch_for_files(spill, running.clone());
    let sorted = on_ranks_with(2, limited, |ctx| {
        ctx.register_csv("t", &path, chorus_frame::CsvOptions::default()).unwrap();
        rows(&ctx.sql("SELECT payload, id FROM t ORDER BY payload DESC").unwrap().collect().unwrap(), true)
    });
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(watcher.join().unwrap(), "the sort should have spilled");
    let got = &sorted[0];
    assert_eq!(got.len(), 1_600_000);
    let want: Vec<String> = (0..1_600_000u64).rev().map(|i| format!("p{i:0>39} | {i}")).collect();
    assert!(*got == want, "the sorted rows differ: first {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
}

/// Collected to rank 0, a sort of four times the pool spills on every rank and is
/// merged on rank 0, in order.
#[test]
fn a_sort_over_four_times_the_pool_spills_and_comes_back_in_order() {
    sorts_in_order_under_a_pool(1, 4);
}

/// Two sorted partitions per rank, merged on rank 0 as they stream in. The merge reads
/// the partitions one after another: each must end as soon as its own sort is done, not
/// when its sibling on the same rank (held back by its window) is. The pool is the whole
/// table: the two sorts of a rank still spill, and their merges of spill files, which
/// DataFusion cannot spill, fit it whenever they run (at half the table they fit only
/// when the two do not merge at once).
#[test]
fn a_collected_sort_of_several_partitions_per_rank_under_a_pool_does_not_hang() {
    sorts_in_order_under_a_pool(2, 1);
}

/// Kept distributed, a sort of four times the pool holds its input on disk while the
/// boundaries are chosen, and each rank's block is its range, in order.
#[test]
fn a_distributed_sort_over_four_times_the_pool_holds_its_input_on_disk_and_splits_it_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let bytes = write_table(&path, 1_600_000);
    // One partition per rank: DataFusion's merge of a sort's spill files cannot spill,
    // and two merging at once on a rank do not fit a pool this small (see
    // a_collected_sort_of_several_partitions_per_rank_under_a_pool_does_not_hang).
    let limited = FrameOptions {
        threads_per_rank: Some(1),
        memory_limit: Some(bytes / 4),
        spill_dir: Some(dir.path().join("spill")),
        ..FrameOptions::default()
    };
    let blocks = on_ranks_with(2, limited, |ctx| {
        ctx.register_csv("t", &path, chorus_frame::CsvOptions::default()).unwrap();
        let df = ctx.sql("SELECT payload, id FROM t ORDER BY payload DESC").unwrap();
        rows(&df.collect_distributed().unwrap(), true)
    });
    for (rank, block) in blocks.iter().enumerate() {
        assert!(block.len() > 400_000, "rank {rank} holds {} of 1,600,000 rows", block.len());
    }
    let got = blocks.concat();
    assert_eq!(got.len(), 1_600_000);
    let want: Vec<String> = (0..1_600_000u64).rev().map(|i| format!("p{i:0>39} | {i}")).collect();
    assert!(got == want, "the sorted rows differ: first {:?}", got.iter().zip(&want).find(|(a, b)| a != b));
}

#[test]
fn an_operator_that_cannot_spill_fails_naming_itself_the_limit_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    write_table(&path, 200_000);
    // A hash join's build side cannot spill.
    let options = FrameOptions {
        threads_per_rank: Some(1),
        memory_limit: Some(MB),
        spill_dir: Some(dir.path().join("spill")),
        ..FrameOptions::default()
    };
    let outcomes: Vec<(Option<chorus_frame::Error>, usize)> = on_ranks_with(2, options, |ctx| {
        ctx.register_csv("t", &path, chorus_frame::CsvOptions::default()).unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold = 0").unwrap();
        ctx.sql("SET datafusion.optimizer.hash_join_single_partition_threshold_rows = 0").unwrap();
        let sql = "SELECT count(*) AS n FROM t a JOIN t b ON a.k = b.k";
        (ctx.sql(sql).unwrap().collect().err(), ctx.rank())
    });
    let (error, rank) = outcomes
        .into_iter()
        .find_map(|(e, rank)| e.filter(|e| matches!(e, chorus_frame::Error::MemoryLimit { .. })).map(|e| (e, rank)))
        .expect("a rank fails with the memory limit");
    let chorus_frame::Error::MemoryLimit { rank: failed_on, message } = &error else { unreachable!("filtered above") };
    assert_eq!(*failed_on, rank);
    assert!(message.contains("HashJoin"), "names the operator: {message}");
    assert!(message.contains("1048576") || message.contains("1024.0 KB") || message.contains("1.0 MB"), "names the limit: {message}");
    assert!(error.to_string().contains("raise FrameOptions::memory_limit"), "says what to do: {error}");
}

/// A sort-merge join spills its sorts, but DataFusion 55 keeps each sort's merge of its
/// spill files (and the join's buffered side) outside what can spill: at twice the
/// pool this fails with `Error::MemoryLimit` instead of completing.
#[test]
#[ignore = "known limitation: DataFusion 55's sort-merge join runs out of unspillable merge memory at twice the pool"]
fn a_sort_merge_join_over_twice_the_pool_spills_and_matches_the_unlimited_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let bytes = write_table(&path, 400_000);
    let sql = "SELECT count(*) AS n, sum(a.id - b.id) AS d, max(b.payload) AS p FROM t a JOIN t b ON a.k = b.k";
    let answer = |options: FrameOptions| {
        let out = on_ranks_with(2, options, |ctx| {
            ctx.register_csv("t", &path, chorus_frame::CsvOptions::default()).unwrap();
            ctx.sql("SET datafusion.optimizer.prefer_hash_join = false").unwrap();
            rows(&ctx.sql(sql).unwrap().collect().unwrap(), false)
        });
        out.into_iter().next().unwrap()
    };
    let free = answer(FrameOptions { threads_per_rank: Some(2), ..FrameOptions::default() });
    let limited = answer(FrameOptions {
        threads_per_rank: Some(2),
        memory_limit: Some(bytes / 2),
        spill_dir: Some(dir.path().join("spill")),
        ..FrameOptions::default()
    });
    assert_eq!(free, vec![format!("800000 | 0 | p{:0>39}", 399_999)]);
    assert_eq!(limited, free);
}
