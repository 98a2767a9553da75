//! Reading a process's place in a job from its launcher's environment.

use std::time::Duration;

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

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn number(name: &str, value: &str) -> Result<usize> {
    value.trim().parse().map_err(|_| Error::Config(format!("{name}={value:?} is not a whole number")))
}

/// Detects the launcher from the environment; `None` when the program was started directly.
pub fn detect() -> Result<Option<Placement>> {
    let pairs: [(Launcher, &str, Option<String>); 4] = [
        (Launcher::Chorus, RANK_ENV, var(SIZE_ENV)),
        (Launcher::OpenMpi, "OMPI_COMM_WORLD_RANK", var("OMPI_COMM_WORLD_SIZE")),
        (Launcher::Pmi, "PMI_RANK", var("PMI_SIZE")),
        // Inside an `sbatch` script SLURM_PROCID is set too; only `srun` sets the step's
        // task count.
        (Launcher::Slurm, "SLURM_PROCID", var("SLURM_STEP_NUM_TASKS")),
    ];
    for (launcher, rank_var, size) in pairs {
        let Some(rank) = var(rank_var) else { continue };
        let Some(size) = size else { continue };
        let (rank, size) = (number(rank_var, &rank)?, number("job size", &size)?);
        if size == 0 || rank >= size {
            return Err(Error::Config(format!("{launcher:?} says rank {rank} of {size}, which is impossible")));
        }
        return Ok(Some(Placement { launcher, rank, size }));
    }
    Ok(None)
}

/// `CHORUS_PROCS`, when set.
pub fn procs_from_env() -> Result<Option<usize>> {
    match var(PROCS_ENV) {
        None => Ok(None),
        Some(v) => match number(PROCS_ENV, &v)? {
            0 => Err(Error::Config(format!("{PROCS_ENV}=0: a job needs at least one process"))),
            n => Ok(Some(n)),
        },
    }
}

/// A duration in seconds from the environment, or `default`.
pub fn seconds(name: &str, default: Duration) -> Result<Duration> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| Error::Config(format!("{name}={v:?} is not a positive number of seconds"))),
    }
}
