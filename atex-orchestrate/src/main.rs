//! The `atex-orchestrate` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    atex_orchestrate::main()
}
