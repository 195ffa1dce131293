//! Child processes of atex-provision (podman, ssh-keygen): started without
//! the Testing Farm token in their environment.

/// The environment variable holding the Testing Farm API token; no child
/// of atex-provision inherits it (a child has no use for it, and whatever
/// it runs in turn could read it).
pub const TOKEN_VAR: &str = "TESTING_FARM_API_TOKEN";

/// `program`, with [`TOKEN_VAR`] removed from its environment. Every
/// command atex-provision itself starts is made here.
pub(crate) fn command(program: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    command.env_remove(TOKEN_VAR);
    command
}
