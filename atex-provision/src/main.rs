//! The `atex-provision` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    atex_provision::main()
}
