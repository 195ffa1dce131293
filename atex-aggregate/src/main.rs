//! The `atex-aggregate` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(atex_shared::exit::INVALID)
}
