//! `childminder up`: runs a tree of processes from `childminder.toml` or a
//! `Procfile`, a presenter over [`childminder::supervisor`].

pub mod config;
pub mod events;
pub mod exit;
pub mod prefix;
pub mod procfile;

use std::path::{Path, PathBuf};

use crate::cli::UpArgs;
use crate::run::diagnose;
use config::{ConfigError, SupervisorConfig};

/// Reads the configuration `up` would run: `-f FILE` (`.toml` means TOML,
/// anything else a Procfile), else `childminder.toml`, else `Procfile`, in
/// `dir`; then keeps the entries `names` select.
///
/// # Errors
///
/// The message for the user: `FILE:LINE: KEY: what is wrong`, or which
/// file is missing.
pub fn load(file: Option<&Path>, dir: &Path, names: &[String]) -> Result<SupervisorConfig, String> {
    let path: PathBuf = match file {
        Some(f) => f.to_owned(),
        None => ["childminder.toml", "Procfile"]
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.exists())
            .ok_or_else(|| {
                format!(
                    "no childminder.toml or Procfile in {}; name one with -f FILE",
                    dir.display()
                )
            })?,
    };
    let shown = match file {
        Some(f) => f.display().to_string(),
        None => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigError {
            file: shown.clone(),
            line: None,
            key: String::new(),
            message: format!("cannot read it: {e}"),
        }
        .to_string()
    })?;
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let mut config = if is_toml {
        config::parse_toml(&text, &shown, &path)
    } else {
        procfile::parse(&text, &shown)
    }
    .map_err(|e| e.to_string())?;
    config.select(names)?;
    Ok(config)
}

/// Runs `childminder up` and returns the exit status.
pub fn up(args: UpArgs) -> i32 {
    let dir = Path::new(".");
    let config = match load(args.file.as_deref(), dir, &args.names) {
        Ok(config) => config,
        Err(message) => {
            diagnose(&message);
            return exit::EXIT_FAILURE;
        }
    };
    let _ = config;
    diagnose("up: not wired yet");
    exit::EXIT_FAILURE
}
