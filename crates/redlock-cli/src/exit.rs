//! The documented exit codes of `redlock`.

/// Everything went well (`status`, `release`).
pub const OK: u8 = 0;
/// Bad arguments (clap uses the same code for usage errors).
pub const USAGE: u8 = 2;
/// The lock could not be released or the status could not be read.
pub const FAILED: u8 = 1;
/// No quorum of nodes could be reached: an infrastructure problem.
pub const UNAVAILABLE: u8 = 69;
/// The lock was lost while the command ran; the command was terminated.
pub const LOCK_LOST: u8 = 70;
/// The resource is held by someone else (`--no-wait`, or `--wait` ran out).
pub const BUSY: u8 = 75;
/// A configuration error: a node refused the credentials or permissions
/// (`WRONGPASS`, `NOAUTH`, `NOPERM`) or a node URL is malformed
/// (`EX_CONFIG`). Waiting cannot fix it.
pub const CONFIG: u8 = 78;
/// The command could not be executed (not executable).
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;
