//! The `ssh` provisioner: existing hosts, checked reachable (being written).
