//! The configuration as the library's [`SupervisorSpec`].

use childminder::Command;
use childminder::supervisor::{self, ChildSpec, Readiness, Shutdown, SupervisorSpec};

use super::config::{ChildConfig, ProcessConfig, Ready, SupervisorConfig};

/// The spec of the whole tree.
pub fn spec(config: &SupervisorConfig) -> SupervisorSpec {
    let mut spec = SupervisorSpec::new();
    if let Some(strategy) = config.strategy {
        spec = spec.strategy(strategy);
    }
    if let Some(intensity) = config.intensity {
        spec = spec.intensity(intensity);
    }
    if let Some(period) = config.period {
        spec = spec.period(period);
    }
    if let Some(auto_shutdown) = config.auto_shutdown {
        spec = spec.auto_shutdown(auto_shutdown);
    }
    spec.children(config.children.iter().map(child))
}

fn child(config: &ChildConfig) -> ChildSpec {
    let (spec, restart, significant, brutal_kill) = match config {
        ChildConfig::Process(p) => (process(p), p.restart, p.significant, p.brutal_kill),
        ChildConfig::Supervisor {
            name,
            restart,
            significant,
            brutal_kill,
            config,
        } => (
            // The library's default for a group is transient: it runs once
            // unless it fails.
            ChildSpec::supervisor(name.clone(), spec(config)),
            *restart,
            *significant,
            *brutal_kill,
        ),
    };
    let mut spec = spec.significant(significant);
    if let Some(restart) = restart {
        spec = spec.restart(restart);
    }
    if brutal_kill {
        spec = spec.shutdown(Shutdown::BrutalKill);
    }
    spec
}

fn process(p: &ProcessConfig) -> ChildSpec {
    let argv = p.command.argv();
    let mut cmd = Command::new(&argv[0]);
    // Whatever leaves a process's group (`setsid`, a double-forking
    // daemon) re-parents to `up` and is ended at the end, as with `run`:
    // every child of `up` comes from the tree.
    cmd.args(&argv[1..]).subreaper(true);
    cmd.envs(p.env.iter().map(|(k, v)| (k, v)));
    if let Some(dir) = &p.cwd {
        cmd.current_dir(dir);
    }
    if let Some(grace) = p.grace {
        cmd.grace_period(grace);
    }
    if let Some(deadline) = p.deadline {
        cmd.deadline(deadline);
    }
    if let Some(signal) = p.stop_signal {
        cmd.term_signal(signal);
    }
    let mut spec = ChildSpec::process(p.name.clone(), cmd);
    if let Some(codes) = &p.success_exit_codes {
        spec = spec.success_exit_codes(codes.iter().copied());
    }
    let b = &p.backoff;
    if b.initial.is_some() || b.max.is_some() || b.reset_after.is_some() {
        let default = supervisor::Backoff::default();
        spec = spec.backoff(supervisor::Backoff {
            initial: b.initial.unwrap_or(default.initial),
            max: b.max.unwrap_or(default.max),
            reset_after: b.reset_after.unwrap_or(default.reset_after),
        });
    }
    if let Some(ready) = &p.ready {
        spec = spec.ready(match ready {
            Ready::Notify => Readiness::Notify,
            Ready::Tcp(addr) => Readiness::Tcp(addr.clone()),
            Ready::Fd(fd) => Readiness::Fd(*fd),
        });
    }
    if let Some(timeout) = p.start_timeout {
        spec = spec.start_timeout(timeout);
    }
    spec
}
