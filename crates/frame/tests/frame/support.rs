//! Runs every rank of a job as a thread of this process (real sockets on loopback), and
//! computes reference answers with single-process DataFusion.

use std::sync::Arc;

use chorus_comm::World;
use chorus_frame::datafusion::arrow::array::RecordBatch;
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
    chorus_datagen::tpch::answer(batches, ordered)
}
