//! The `podman` provisioner: containers on the controller (being written).
