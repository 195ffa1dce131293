//! The `atex-exec` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    atex_exec::main()
}
