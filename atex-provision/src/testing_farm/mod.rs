//! The `testing-farm` provisioner: machines reserved through the Testing
//! Farm REST API (being written).
