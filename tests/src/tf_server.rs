//! A local HTTP server implementing the documented Testing Farm API
//! endpoints that atex-provision uses (being written).
