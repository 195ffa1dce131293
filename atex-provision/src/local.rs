//! The `local` provisioner: the controller itself, as many times as asked.

use std::sync::atomic::{AtomicU64, Ordering};

use atex_shared::records::{Connection, Machine};

use crate::provisioner::{BoxFuture, CancellationToken, ProvisionError, Provisioner};

/// Options of `atex-provision local`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// The platform results are reported for (default: `local`).
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
}

/// Hands out the controller itself: every machine runs its commands
/// locally. Nothing is reserved, so release only forgets.
#[derive(Debug, Default)]
pub struct Local {
    platform: Option<String>,
    serial: AtomicU64,
}

impl Local {
    /// A local provisioner reporting `args.platform`.
    pub fn new(args: &Args) -> Self {
        Local {
            platform: args.platform.clone(),
            serial: AtomicU64::new(0),
        }
    }
}

impl Provisioner for Local {
    fn kind(&self) -> &str {
        "local"
    }

    fn reserve(
        &self,
        _cancel: CancellationToken,
    ) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        // Ids stay unique across concurrent `atex-provision local` runs.
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let id = format!("local/{}-{n}", std::process::id());
        let platform = self.platform.clone().unwrap_or_else(|| "local".to_owned());
        Box::pin(async move {
            Ok(Machine {
                context: Default::default(),
                id,
                provisioner: "local".to_owned(),
                connection: Connection::Local,
                platform,
                release: serde_json::Value::Null,
            })
        })
    }

    fn release(&self, _machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        Box::pin(async { Ok(()) })
    }
}
