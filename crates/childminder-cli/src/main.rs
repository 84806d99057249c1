//! `childminder`: the command-line tool of the childminder library. All of
//! it lives in the `childminder_cli` library; see [`childminder_cli::main_entry`].

fn main() -> std::process::ExitCode {
    childminder_cli::main_entry()
}
