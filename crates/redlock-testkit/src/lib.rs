//! Test support for redlock-rs.
