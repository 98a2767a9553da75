//! Every rank says hello.
//!
//!     cargo run --example hello                      # one process
//!     CHORUS_PROCS=4 cargo run --example hello       # self-spawned, 4 ranks
//!     chorus run -n 4 target/debug/examples/hello    # started by the launcher

fn main() -> chorus::Result<()> {
    let world = chorus::init()?;
    println!("rank {} of {}", world.rank(), world.size());
    Ok(())
}
