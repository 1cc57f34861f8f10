//! Names for logs: addresses without passwords, and what is wrong with a
//! URL (secret scrubbing itself is [`redlock_kit::Secrets`]).

use redis::{ConnectionAddr, ConnectionInfo};
pub(crate) use redlock_kit::{redact_url, Secrets};

/// `redis://user@host:port/db` for a connection, never with the password.
pub(crate) fn display_id(info: &ConnectionInfo) -> String {
    let settings = info.redis_settings();
    let scheme = match info.addr() {
        ConnectionAddr::Tcp(..) => "redis",
        ConnectionAddr::TcpTls { .. } => "rediss",
        ConnectionAddr::Unix(..) => "redis+unix",
        _ => "redis",
    };
    let user = settings
        .username()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = if settings.db() != 0 {
        format!("/{}", settings.db())
    } else {
        String::new()
    };
    format!("{scheme}://{user}{}{db}", info.addr())
}

/// The secrets of a connection (its password), for [`Secrets::redact`].
pub(crate) fn secrets_of(info: &ConnectionInfo) -> Secrets {
    let mut secrets = Secrets::default();
    secrets.add_opt(info.redis_settings().password());
    secrets
}

/// The URLs of a deployment (cluster seeds, sentinels) and the secrets in
/// them; `InvalidConfig` with `none` when there are none.
#[cfg(any(feature = "cluster", feature = "sentinel"))]
pub(crate) fn seed_urls<'a, S: AsRef<str>>(
    seeds: &'a [S],
    none: &str,
) -> Result<(Vec<&'a str>, Secrets), crate::Error> {
    let urls: Vec<&str> = seeds.iter().map(|s| s.as_ref()).collect();
    if urls.is_empty() {
        return Err(crate::Error::InvalidConfig(none.to_owned()));
    }
    let mut redact = Secrets::default();
    for u in &urls {
        if let Ok(info) = redis::IntoConnectionInfo::into_connection_info(*u) {
            redact.add_opt(info.redis_settings().password());
        }
    }
    Ok((urls, redact))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_connection_info() {
        use redis::IntoConnectionInfo;
        let info = "redis://alice:s3cret@127.0.0.1:6380/3"
            .into_connection_info()
            .unwrap();
        let id = display_id(&info);
        assert_eq!(id, "redis://alice@127.0.0.1:6380/3");
        let r = secrets_of(&info);
        assert_eq!(r.redact("bad s3cret here"), "bad *** here");
    }
}
