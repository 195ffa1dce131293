//! A provisioner written outside atex-provision: a fixed set of "slots" on
//! the controller (for example CPU-pinned chroots), each handed out at most
//! once at a time, driven by [`atex_provision::Pool`] like the built-in
//! ones.
//!
//! Run it with `cargo run -p atex-provision --example custom_provisioner`:
//! it asks for 3 machines from 2 slots, gets 2 at once, releases one,
//! gets the third into the freed slot, and stops.

use std::sync::{Arc, Mutex};

use atex_provision::{
    BoxFuture, CancellationToken, Pool, PoolOptions, ProvisionError, Provisioner,
};
use atex_shared::records::{Connection, Machine};

/// Slots by name; `true` when taken.
struct Slots {
    slots: Mutex<Vec<(String, bool)>>,
}

impl Slots {
    fn new(names: &[&str]) -> Self {
        Slots {
            slots: Mutex::new(names.iter().map(|n| ((*n).to_owned(), false)).collect()),
        }
    }

    fn set(&self, name: &str, taken: bool) -> Result<(), ProvisionError> {
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| ProvisionError::Failed("slot table poisoned".into()))?;
        if let Some(slot) = slots.iter_mut().find(|(n, _)| n == name) {
            slot.1 = taken;
        }
        Ok(())
    }
}

impl Provisioner for Slots {
    fn kind(&self) -> &str {
        "slots"
    }

    // The pool never asks for more than there are slots.
    fn max_machines(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    fn reserve(&self, cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        Box::pin(async move {
            if cancel.is_cancelled() {
                return Err(ProvisionError::Cancelled);
            }
            let name = {
                let mut slots = self
                    .slots
                    .lock()
                    .map_err(|_| ProvisionError::Failed("slot table poisoned".into()))?;
                let free = slots
                    .iter_mut()
                    .find(|(_, taken)| !taken)
                    .ok_or_else(|| ProvisionError::Failed("no free slot".into()))?;
                free.1 = true;
                free.0.clone()
            };
            Ok(Machine {
                context: Default::default(),
                id: format!("slots/{name}"),
                provisioner: "slots".into(),
                connection: Connection::Local,
                platform: "local".into(),
                // What release needs, in the record itself.
                release: serde_json::json!({ "slot": name }),
            })
        })
    }

    fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        Box::pin(async move {
            let slot = machine.release["slot"].as_str().unwrap_or_default();
            self.set(slot, false)
        })
    }
}

async fn demo() -> Result<(), ProvisionError> {
    let slots = Arc::new(Slots::new(&["a", "b"]));
    let mut pool = Pool::new(slots, PoolOptions::default());
    pool.provision(3);
    let first = pool
        .next()
        .await
        .ok_or(ProvisionError::Failed("none".into()))??;
    let second = pool
        .next()
        .await
        .ok_or(ProvisionError::Failed("none".into()))??;
    println!(
        "got {} and {}; {} waiting for a slot",
        first.id,
        second.id,
        pool.pending()
    );
    pool.release(&first.id).await?;
    let third = pool
        .next()
        .await
        .ok_or(ProvisionError::Failed("none".into()))??;
    println!("got {} after releasing {}", third.id, first.id);
    let errors = pool.stop().await;
    println!("stopped, {} release error(s)", errors.len());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo())?;
    Ok(())
}
