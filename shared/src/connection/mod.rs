//! Connections to machines: run commands and upload files on the
//! controller itself, over SSH, or inside a podman container.
