//! Reading a process's place in a job from its launcher's environment.

use crate::{Error, Result};

/// Who started this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `chorus run`, or a self-spawning rank 0.
    Chorus,
    /// Open MPI's `mpiexec`/`mpirun`.
    OpenMpi,
    /// MPICH/Hydra (or another PMI launcher).
    Pmi,
    /// Slurm's `srun`.
    Slurm,
}

/// This process's rank and the job's size, as its launcher set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Who launched us.
    pub launcher: Launcher,
    /// Our rank.
    pub rank: usize,
    /// The job's size.
    pub size: usize,
}

/// Environment variable: rank set by chorus launchers.
pub const RANK_ENV: &str = "CHORUS_RANK";
/// Environment variable: job size set by chorus launchers.
pub const SIZE_ENV: &str = "CHORUS_SIZE";
/// Environment variable: `host:port` of the rendezvous coordinator.
pub const COORDINATOR_ENV: &str = "CHORUS_COORDINATOR";
/// Environment variable: number of processes a directly started program spawns.
pub const PROCS_ENV: &str = "CHORUS_PROCS";

/// A launcher's (not chorus's) variable.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &str, value: &str) -> Result<usize> {
    value.trim().parse().map_err(|_| Error::Config(format!("{name}={value:?} is not a whole number")))
}

/// Detects the launcher from the environment; `None` when the program was started directly.
pub fn detect() -> Result<Option<Placement>> {
    let settings = chorus_comm::settings::settings()?;
    if let (Some(rank), Some(size)) = (settings.rank, settings.size) {
        return placement(Launcher::Chorus, rank, size).map(Some);
    }
    let pairs: [(Launcher, &str, Option<String>); 3] = [
        (Launcher::OpenMpi, "OMPI_COMM_WORLD_RANK", var("OMPI_COMM_WORLD_SIZE")),
        (Launcher::Pmi, "PMI_RANK", var("PMI_SIZE")),
        // Inside an `sbatch` script SLURM_PROCID is set too; only `srun` sets the step's
        // task count.
        (Launcher::Slurm, "SLURM_PROCID", var("SLURM_STEP_NUM_TASKS")),
    ];
    for (launcher, rank_var, size) in pairs {
        let Some(rank) = var(rank_var) else { continue };
        let Some(size) = size else { continue };
        return placement(launcher, number(rank_var, &rank)?, number("job size", &size)?).map(Some);
    }
    Ok(None)
}

fn placement(launcher: Launcher, rank: usize, size: usize) -> Result<Placement> {
    if size == 0 || rank >= size {
        return Err(Error::Config(format!("{launcher:?} says rank {rank} of {size}, which is impossible")));
    }
    Ok(Placement { launcher, rank, size })
}
