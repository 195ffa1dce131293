//! atex-provision: machines for the other tools, as Machine records.
//!
//! The library is one interface, [`Provisioner`] (reserve one machine,
//! release one), implemented by [`local`], [`ssh`], [`podman`] and
//! [`testing_farm`], and one driver, [`Pool`], which asks a provisioner
//! for N machines, hands each out as soon as it is ready, retries, caps
//! concurrency and cleans up on stop. The `atex-provision` command
//! ([`cli`]) and the orchestrator both drive a [`Pool`]; a custom
//! provisioner written outside this crate plugs into it the same way: see
//! the example on [`Provisioner`], and `examples/custom_provisioner.rs`
//! (`cargo run -p atex-provision --example custom_provisioner`), a whole
//! program driving its own provisioner through a [`Pool`].
#![warn(missing_docs)]

mod child;
pub mod cli;
pub mod libvirt;
pub mod local;
pub mod podman;
mod pool;
mod provisioner;
pub mod ssh;
pub mod testing_farm;

pub use child::TOKEN_VAR;
pub use pool::{Log, Pool, PoolOptions};
pub use provisioner::{
    BoxFuture, CancellationToken, ProvisionError, Provisioner, WithContext, or_cancel,
};

/// The process entry point of `atex-provision`.
pub fn main() -> std::process::ExitCode {
    cli::main()
}
