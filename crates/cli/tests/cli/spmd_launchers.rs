//! Bootstrapping from other launchers: Open MPI's `mpiexec`, and ranks in separate network
//! namespaces that must talk over TCP.

use std::process::Command;
use std::time::Duration;

use crate::support::{finish, free_port, me, rank_args, skip_or_fail, Namespaces};

#[test]
fn mpiexec_open_mpi_bootstrap() {
    let Ok(mpiexec) = which("mpiexec") else {
        return skip_or_fail("MPI", "mpiexec not found; install Open MPI (apt-get install openmpi-bin)");
    };
    let home = std::env::temp_dir().join(format!("chorus-mpi-home-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let coordinator = format!("127.0.0.1:{}", free_port());
    let out = finish(
        Command::new(mpiexec)
            .args(["--allow-run-as-root", "--oversubscribe", "-n", "3"])
            .args(["-x", "CHORUS_TEST_SCENARIO=mpi", "-x", &format!("CHORUS_COORDINATOR={coordinator}")])
            .args(["-x", &format!("HOME={}", home.display())])
            .arg(me())
            .args(rank_args()),
        Duration::from_secs(120),
    );
    assert!(out.success(), "{}", out.all());
    for r in 0..3 {
        assert!(out.stdout.contains(&format!("rank {r} of 3: sum 6, gathered rank 0|rank 1|rank 2")), "{}", out.all());
    }
    // With no secret given, ranks agreed on the per-user default secret file.
    let secret = home.join(".chorus/secret");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn mpiexec_without_coordinator_says_what_to_set() {
    let Ok(mpiexec) = which("mpiexec") else {
        return skip_or_fail("MPI", "mpiexec not found; install Open MPI (apt-get install openmpi-bin)");
    };
    let out = finish(
        Command::new(mpiexec)
            .args(["--allow-run-as-root", "--oversubscribe", "-n", "2", "-x", "CHORUS_TEST_SCENARIO=mpi"])
            .env_remove("CHORUS_COORDINATOR")
            .arg(me())
            .args(rank_args()),
        Duration::from_secs(60),
    );
    assert!(!out.success());
    assert!(out.stderr.contains("CHORUS_COORDINATOR is not set"), "{}", out.all());
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).ok_or(())
}

/// Ranks on three hosts (network namespaces) bootstrap through rank 0's rendezvous and
/// run collectives over TCP, encrypted: TLS is on by default between hosts.
#[test]
fn ranks_in_three_network_namespaces_complete_collectives_over_tls() {
    let Some(ns) = Namespaces::for_test(3) else { return };
    let secret = chorus::Secret::generate().unwrap().to_hex();
    let outs = netns_job(&ns, &secret, |_| "auto");
    for (r, out) in outs.iter().enumerate() {
        assert!(out.success(), "rank {r}: {}", out.all());
        assert!(out.stdout.contains(&format!("rank {r} of 3: sum 6, gathered rank 0|rank 1|rank 2")), "{}", out.all());
        // Each rank's connection to the coordinator and to the two other ranks is under
        // TLS, and rank 0, which serves the rendezvous, also accepts all three ranks' there.
        let secured = out.stderr.matches("secured with TLS").count();
        assert_eq!(secured, if r == 0 { 3 + 3 } else { 3 }, "rank {r}: {}", out.all());
    }
}

/// A rank that has TLS off cannot join a job whose other ranks have it on: it is told
/// why, rank 0 logs which peer it refused and why, and nobody hangs.
#[test]
fn a_rank_with_tls_off_is_refused_and_both_sides_name_the_setting() {
    let Some(ns) = Namespaces::for_test(3) else { return };
    let secret = chorus::Secret::generate().unwrap().to_hex();
    let outs = netns_job(&ns, &secret, |r| if r == 2 { "off" } else { "auto" });
    assert!(outs.iter().all(|o| !o.success()), "{}", outs.iter().map(|o| o.all()).collect::<String>());
    assert!(outs[2].stderr.contains("requires TLS") && outs[2].stderr.contains("CHORUS_TLS=off"), "{}", outs[2].all());
    assert!(outs[0].stderr.contains("10.123.0.3") && outs[0].stderr.contains("does not use TLS"), "{}", outs[0].all());
    assert!(outs[0].stderr.contains("rank(s) 2 did not join"), "{}", outs[0].all());
}

/// Runs the `netns` scenario as ranks 0..3 on hosts 0..3, rank `r` with `CHORUS_TLS=tls(r)`.
fn netns_job(ns: &Namespaces, secret: &str, tls: impl Fn(usize) -> &'static str) -> Vec<crate::support::Finished> {
    let children: Vec<_> = (0..3)
        .map(|r| {
            let mut cmd = ns.exec(r, me());
            cmd.args(rank_args())
                .env("CHORUS_TEST_SCENARIO", "netns")
                .env("PMI_RANK", r.to_string())
                .env("PMI_SIZE", "3")
                .env("CHORUS_COORDINATOR", "10.123.0.1:47000")
                .env("CHORUS_SECRET", secret)
                .env("CHORUS_TLS", tls(r))
                .env("CHORUS_CONNECT_TIMEOUT", "8")
                .env("RUST_LOG", "warn,chorus_comm::handshake=debug");
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    children.into_iter().map(|c| crate::support::wait_with_limit(c, Duration::from_secs(60))).collect()
}

/// Starts `n` copies of the rank program with `env(rank)` and waits for all of them.
fn run_with_env(n: usize, scenario: &str, env: impl Fn(usize) -> Vec<(String, String)>) -> Vec<crate::support::Finished> {
    let children: Vec<_> = (0..n)
        .map(|r| {
            let mut cmd = Command::new(me());
            cmd.args(rank_args()).env("CHORUS_TEST_SCENARIO", scenario);
            for (k, v) in env(r) {
                cmd.env(k, v);
            }
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    children.into_iter().map(|c| crate::support::wait_with_limit(c, Duration::from_secs(60))).collect()
}

#[test]
fn srun_environment_bootstrap() {
    let coordinator = format!("127.0.0.1:{}", free_port());
    let secret = chorus::Secret::generate().unwrap().to_hex();
    let outs = run_with_env(3, "mpi", |r| {
        vec![
            ("SLURM_PROCID".into(), r.to_string()),
            ("SLURM_STEP_NUM_TASKS".into(), "3".into()),
            ("SLURM_NTASKS".into(), "3".into()),
            ("CHORUS_COORDINATOR".into(), coordinator.clone()),
            ("CHORUS_SECRET".into(), secret.clone()),
        ]
    });
    for (r, out) in outs.iter().enumerate() {
        assert!(out.success(), "rank {r}: {}", out.all());
        assert!(out.stdout.contains(&format!("rank {r} of 3: sum 6")), "{}", out.all());
    }
}

#[test]
fn inside_an_sbatch_script_without_srun_a_program_is_a_world_of_one() {
    // sbatch sets SLURM_PROCID and SLURM_NTASKS for the batch script itself, not a step.
    let outs = run_with_env(1, "hello", |_| vec![("SLURM_PROCID".into(), "0".into()), ("SLURM_NTASKS".into(), "4".into())]);
    assert_eq!(outs[0].stdout.lines().find(|l| l.starts_with("rank")), Some("rank 0 of 1"), "{}", outs[0].all());
}

#[test]
fn a_rank_that_cannot_reach_its_coordinator_says_what_to_check() {
    let coordinator = format!("127.0.0.1:{}", free_port());
    let outs = run_with_env(1, "hello", |_| {
        vec![
            ("PMI_RANK".into(), "1".into()),
            ("PMI_SIZE".into(), "2".into()),
            ("CHORUS_COORDINATOR".into(), coordinator.clone()),
            ("CHORUS_SECRET".into(), chorus::Secret::generate().unwrap().to_hex()),
            ("CHORUS_CONNECT_TIMEOUT".into(), "0.5".into()),
        ]
    });
    assert_eq!(outs[0].code, Some(1), "{}", outs[0].all());
    assert!(outs[0].stderr.contains(&format!("rank 1 could not reach the job's coordinator at {coordinator}")), "{}", outs[0].all());
    assert!(outs[0].stderr.contains("is rank 0 (or the launcher) running"), "{}", outs[0].all());
}
