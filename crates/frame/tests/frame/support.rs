//! Runs every rank of a job as a thread of this process (real sockets on loopback), and
//! computes reference answers with single-process DataFusion.

use std::sync::Arc;

use chorus_comm::World;
use chorus_frame::datafusion::arrow::array::{Array, Float32Array, Float64Array, RecordBatch};
use chorus_frame::datafusion::arrow::datatypes::DataType;
use chorus_frame::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use chorus_frame::datafusion::prelude::{SessionConfig, SessionContext};
use chorus_frame::{Context, FrameOptions};

/// Runs `body` on every rank of an `n`-rank job with `threads` partitions per rank;
/// returns each rank's result in rank order.
pub fn on_ranks<R: Send>(n: usize, threads: usize, body: impl Fn(&Context) -> R + Sync) -> Vec<R> {
    on_ranks_with(n, FrameOptions { threads_per_rank: Some(threads), ..FrameOptions::default() }, body)
}

pub fn on_ranks_with<R: Send>(n: usize, options: FrameOptions, body: impl Fn(&Context) -> R + Sync) -> Vec<R> {
    let worlds = World::local(n).expect("start a local job");
    std::thread::scope(|s| {
        let body = &body;
        let ranks: Vec<_> = worlds
            .into_iter()
            .map(|world| {
                let options = options.clone();
                s.spawn(move || {
                    let world = Arc::new(world);
                    let ctx = Context::with_options(Arc::clone(&world), options).expect("context");
                    let result = body(&ctx);
                    drop(ctx);
                    assert_nothing_left_unreceived(&world);
                    // Finalizing checks that every rank made the same collective calls.
                    if let Some(world) = Arc::into_inner(world) {
                        let _ = world.finalize();
                    }
                    result
                })
            })
            .collect();
        ranks.into_iter().map(|r| r.join().expect("rank thread")).collect()
    })
}

/// Checks that the queries left no message behind: after a message from every other
/// rank (links keep order), nothing sent to this rank may be left unreceived. Skipped
/// when a failed query has aborted the job.
fn assert_nothing_left_unreceived(world: &World) {
    const FLUSH: u64 = 0xF1_05;
    let peers = || (0..world.size()).filter(|p| *p != world.rank());
    if peers().any(|peer| world.send(peer, FLUSH, &()).is_err()) {
        return;
    }
    if peers().any(|peer| world.recv::<()>(peer, FLUSH).is_err()) {
        return;
    }
    assert_eq!(world.unreceived_messages(), 0, "rank {} was sent messages no query received", world.rank());
}

/// A single-process DataFusion session, the reference.
pub fn reference_session() -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(3);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    SessionContext::new_with_config(config)
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f)
}

/// The rows as strings, floats rounded to 9 significant digits; sorted unless `ordered`.
pub fn rows(batches: &[RecordBatch], ordered: bool) -> Vec<String> {
    let mut out = Vec::new();
    let options = FormatOptions::default().with_null("NULL");
    for batch in batches {
        let formatters: Vec<_> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, f)| float_cell(column.as_ref(), row).unwrap_or_else(|| f.value(row).to_string()))
                .collect();
            out.push(cells.join(" | "));
        }
    }
    if !ordered {
        out.sort();
    }
    out
}

fn float_cell(column: &dyn Array, row: usize) -> Option<String> {
    if column.is_null(row) {
        return None;
    }
    let v = match column.data_type() {
        DataType::Float64 => column.as_any().downcast_ref::<Float64Array>()?.value(row),
        DataType::Float32 => column.as_any().downcast_ref::<Float32Array>()?.value(row) as f64,
        _ => return None,
    };
    Some(if v == 0.0 { "0".into() } else { format!("{v:.8e}") })
}
