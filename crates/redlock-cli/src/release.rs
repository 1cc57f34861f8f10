//! `redlock release`.

use redlock_core::{LockError, NodeOutcome, Redlock};

use crate::{exit, ReleaseArgs};

pub async fn release(redlock: &Redlock, args: ReleaseArgs) -> u8 {
    if args.force && !args.yes {
        eprintln!(
            "redlock: --force deletes the lock whoever holds it, and the holder is not told; \
             add --yes to confirm"
        );
        return exit::USAGE;
    }
    let result = match &args.token {
        Some(token) if !args.force => redlock.release_token(args.resource.as_str(), token).await,
        _ => redlock.force_release(args.resource.as_str()).await,
    };
    match result {
        Ok(r) if r.keys_deleted > 0 => {
            if args.force {
                println!(
                    "force-released '{}': deleted {} key(s) on {} answering node(s); the holder was not told",
                    args.resource, r.keys_deleted, r.nodes_answered
                );
            } else {
                println!(
                    "released '{}': deleted {} key(s) on {} answering node(s)",
                    args.resource, r.keys_deleted, r.nodes_answered
                );
            }
            exit::OK
        }
        Ok(_) if args.force => {
            println!("'{}' was not held: nothing to delete", args.resource);
            exit::OK
        }
        Ok(_) => {
            eprintln!(
                "redlock: nothing released: '{}' is not held with that token (wrong token, or the lock expired)",
                args.resource
            );
            exit::FAILED
        }
        Err(LockError::InvalidArgument(e)) => {
            eprintln!("redlock: {e}");
            exit::USAGE
        }
        Err(e) if refused_by_configuration(&e) => {
            eprintln!("redlock: {}", crate::run::config_message(&e));
            exit::CONFIG
        }
        Err(e) => {
            eprintln!("redlock: {e}");
            exit::UNAVAILABLE
        }
    }
}

/// Whether so many nodes refused the credentials or permissions that no
/// quorum was possible.
fn refused_by_configuration(e: &LockError) -> bool {
    e.failure().is_some_and(|f| {
        let refused = f.count(|o| matches!(o, NodeOutcome::Error(n) if n.is_config()));
        refused > 0 && f.nodes.len() - refused < f.quorum
    })
}
