//! `childminder`: the command-line tool of the childminder library. All of
//! it lives in the `childminder_cli` library; see [`childminder_cli::main_entry`].

fn main() -> std::process::ExitCode {
    childminder_cli::main_entry()
}

/// Runs before `main`, and so before the Rust runtime sets SIGPIPE to
/// ignored for itself: glibc calls every `.init_array` entry with `argc`,
/// `argv` and `envp` first (std captures `argv` on Linux this way). It
/// records SIGPIPE's disposition as the parent gave it, so the command can
/// get the same (`trap '' PIPE` reaches it, as with GNU `timeout`).
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_INHERITED_SIGNAL_STATE: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = record_inherited_signal_state;

extern "C" fn record_inherited_signal_state(
    _argc: libc::c_int,
    _argv: *const *const libc::c_char,
    _envp: *const *const libc::c_char,
) {
    childminder_cli::record_inherited_signal_state();
}
