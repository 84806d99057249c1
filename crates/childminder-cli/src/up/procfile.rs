//! The Procfile format (Heroku, foreman, overmind): one `name: command`
//! line per process, `#` comments and blank lines ignored. Each command
//! runs through `sh -c`. Every entry is significant and temporary, under
//! `auto_shutdown = any_significant`: when one ends, all stop, as foreman
//! and overmind do.

use super::config::{
    AutoShutdown, Backoff, ChildConfig, CommandLine, ConfigError, Lines, ProcessConfig, Restart,
    SupervisorConfig, check_name,
};

/// Reads a Procfile. `file` is the name used in messages.
///
/// # Errors
///
/// The first bad line: no `:`, a bad or repeated name, an empty command;
/// or a Procfile without entries.
pub fn parse(text: &str, file: &str) -> Result<SupervisorConfig, ConfigError> {
    let error = |line: usize, key: &str, message: String| ConfigError {
        file: file.to_owned(),
        line: Some(line),
        key: key.to_owned(),
        message,
    };
    let mut children: Vec<ChildConfig> = Vec::new();
    let mut lines = Lines::new(file);
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, command)) = line.split_once(':') else {
            return Err(error(
                line_no,
                "",
                format!("expected `name: command`, found {line:?}"),
            ));
        };
        let name = name.trim();
        check_name(name).map_err(|m| error(line_no, name, m))?;
        if children.iter().any(|c| c.name() == name) {
            return Err(error(
                line_no,
                name,
                "this name is used twice; names must be unique".into(),
            ));
        }
        let command = command.trim();
        if command.is_empty() {
            return Err(error(line_no, name, "the command is empty".into()));
        }
        if command.contains('\0') {
            return Err(error(line_no, name, "the command holds a NUL byte".into()));
        }
        lines.record(name, "", line_no);
        children.push(ChildConfig::Process(ProcessConfig {
            name: name.to_owned(),
            command: CommandLine::Shell(command.to_owned()),
            restart: Some(Restart::Temporary),
            success_exit_codes: None,
            grace: None,
            deadline: None,
            stop_signal: None,
            brutal_kill: false,
            significant: true,
            env: Vec::new(),
            cwd: None,
            backoff: Backoff::default(),
            ready: None,
            start_timeout: None,
        }));
    }
    if children.is_empty() {
        return Err(ConfigError {
            file: file.to_owned(),
            line: None,
            key: String::new(),
            message: "no processes: expected `name: command` lines".into(),
        });
    }
    Ok(SupervisorConfig {
        strategy: None,
        intensity: None,
        period: None,
        auto_shutdown: Some(AutoShutdown::AnySignificant),
        children,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_comments_and_blank_lines() {
        let c = parse(
            "# the app\n\nweb: bundle exec rails s -p $PORT\n  worker:python w.py --a=b:c  \n",
            "Procfile",
        )
        .unwrap();
        assert_eq!(c.auto_shutdown, Some(AutoShutdown::AnySignificant));
        assert_eq!(c.process_paths(), ["web", "worker"]);
        let ChildConfig::Process(worker) = &c.children[1] else {
            panic!()
        };
        assert_eq!(worker.command.argv(), ["sh", "-c", "python w.py --a=b:c"]);
        assert!(worker.significant);
        assert_eq!(worker.restart, Some(Restart::Temporary));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("web: x\n\nno colon here\n", "Procfile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Procfile:3: expected `name: command`, found \"no colon here\""
        );
        let e = parse("web: x\nweb: y\n", "Procfile").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Procfile:2: web: this name is used twice; names must be unique"
        );
        let e = parse("web:   \n", "P").unwrap_err();
        assert_eq!(e.to_string(), "P:1: web: the command is empty");
        let e = parse("w b: x\n", "P").unwrap_err();
        assert!(
            e.to_string().starts_with("P:1: w b: \"w b\" holds ' '"),
            "{e}"
        );
        let e = parse(": x\n", "P").unwrap_err();
        assert!(
            e.to_string().starts_with("P:1: a name cannot be empty"),
            "{e}"
        );
        let e = parse("# nothing\n\n", "P").unwrap_err();
        assert_eq!(
            e.to_string(),
            "P: no processes: expected `name: command` lines"
        );
    }
}
