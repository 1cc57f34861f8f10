//! Passwords never reach a log line, an error or `Debug` output.
//!
//! An adapter collects every secret of a node once ([`Secrets::add`],
//! [`Secrets::add_from_url`]) and passes every text it shows through
//! [`Secrets::redact`]; ids are built from addresses, or from URLs through
//! [`redact_url`].

use std::fmt;

/// The secrets of one node (passwords, also percent-decoded), replaced by
/// `***` in any text given to [`redact`](Self::redact). Its `Debug` output
/// shows none of them.
///
/// ```
/// use redlock_kit::Secrets;
///
/// let mut secrets = Secrets::default();
/// secrets.add_from_url("redis://app:s%40cret@10.0.0.1:6379/0?sentinelPassword=other");
/// assert_eq!(secrets.redact("auth s@cret failed"), "auth *** failed");
/// assert_eq!(secrets.redact("and other"), "and ***");
/// assert_eq!(format!("{secrets:?}"), "Secrets(2)");
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(Vec<String>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // How many distinct passwords, never what they are.
        let distinct = self
            .0
            .iter()
            .filter(|s| !self.0.iter().any(|o| o != *s && percent_decode(o) == **s))
            .count();
        write!(f, "Secrets({distinct})")
    }
}

impl Secrets {
    /// Adds a secret (ignored when empty) and its percent-decoded form.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let decoded = percent_decode(secret);
        for s in [secret.to_owned(), decoded] {
            if !s.is_empty() && !self.0.contains(&s) {
                self.0.push(s);
            }
        }
        // Longest first, so that a secret containing another is replaced
        // whole.
        self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Adds the secret if there is one.
    pub fn add_opt(&mut self, secret: Option<&str>) {
        if let Some(s) = secret {
            self.add(s);
        }
    }

    /// Adds the password of a URL's user info (`user:password@`, or a lone
    /// `password@`) and of query parameters whose name contains `password`
    /// (such as `sentinelPassword=`).
    pub fn add_from_url(&mut self, url: &str) {
        let Some((_, rest)) = url.split_once("://") else {
            return;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            match userinfo.split_once(':') {
                Some((_, password)) => self.add(password),
                None => self.add(userinfo),
            }
        }
        if let Some((_, query)) = rest.split_once('?') {
            let query = query.split('#').next().unwrap_or(query);
            for pair in query.split('&') {
                if let Some((k, v)) = pair.split_once('=') {
                    // `password=`, `pass=`, `passwd=`, `auth=`, `secret=`,
                    // `token=`: whatever names a credential.
                    let k = k.to_ascii_lowercase();
                    if ["pass", "auth", "secret", "token"]
                        .iter()
                        .any(|w| k.contains(w))
                    {
                        self.add(v);
                    }
                }
            }
        }
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

/// Removes the password from a `scheme://user:password@host` text, for ids,
/// logs and errors. Text that is not a URL loses everything before an `@`;
/// other text is returned as it is.
///
/// ```
/// use redlock_kit::redact_url;
///
/// assert_eq!(redact_url("redis://app:s3cret@10.0.0.1:6379/0"), "redis://app@10.0.0.1:6379/0");
/// assert_eq!(redact_url("redis://:s3cret@10.0.0.1"), "redis://10.0.0.1");
/// assert_eq!(redact_url("s3cret@10.0.0.1"), "***@10.0.0.1");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return match url.rfind('@') {
            Some(at) => format!("***@{}", &url[at + 1..]),
            None => url.to_owned(),
        };
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let without_user = match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or("");
            let user = if user.is_empty() {
                String::new()
            } else {
                format!("{user}@")
            };
            format!(
                "{}://{user}{}{}",
                &url[..scheme_end],
                &authority[at + 1..],
                &rest[authority_end..]
            )
        }
        None => url.to_owned(),
    };
    // Passwords given as query parameters go too.
    let mut secrets = Secrets::default();
    secrets.add_from_url(url);
    secrets.redact(&without_user)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("redis://alice:s3cret@host:6379/2"),
            "redis://alice@host:6379/2"
        );
        assert_eq!(redact_url("redis://:s3cret@host:6379"), "redis://host:6379");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("rediss://u:p@h"), "rediss://u@h");
        assert_eq!(redact_url("s3cret@h"), "***@h");
        assert_eq!(redact_url("no secret here"), "no secret here");
        let shown = redact_url("redis-sentinel://h:26379?sentinelPassword=topsecret&x=1");
        assert!(!shown.contains("topsecret"), "{shown}");
        for query in [
            "pass=pw-s3cr3t",
            "passwd=pw-s3cr3t",
            "auth=pw-s3cr3t",
            "token=pw-s3cr3t",
        ] {
            let shown = redact_url(&format!("redis+unix:///tmp/sock?{query}"));
            assert!(!shown.contains("pw-s3cr3t"), "{shown}");
        }
    }

    #[test]
    fn secrets_are_replaced_also_percent_decoded() {
        let mut s = Secrets::default();
        s.add_from_url("redis://user:s%40cret@host:6379/0?sentinelPassword=other");
        assert_eq!(s.redact("bad s@cret and s%40cret"), "bad *** and ***");
        assert_eq!(s.redact("x other y"), "x *** y");
        let mut s = Secrets::default();
        s.add_from_url("redis://onlypass@host");
        assert_eq!(s.redact("onlypass"), "***");
        let mut s = Secrets::default();
        s.add_from_url("redis://host:6379");
        assert_eq!(s.redact("host:6379"), "host:6379");
        assert_eq!(s, Secrets::default());
    }

    #[test]
    fn a_longer_secret_is_replaced_whole() {
        let mut s = Secrets::default();
        s.add("pw");
        s.add("pw-long");
        s.add_opt(None);
        s.add("");
        assert_eq!(s.redact("pw-long pw"), "*** ***");
    }

    #[test]
    fn debug_shows_no_secret() {
        let mut s = Secrets::default();
        s.add("hunter2");
        s.add("a%20b");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("a b"),
            "{shown}"
        );
        assert_eq!(shown, "Secrets(2)");
    }

    #[test]
    fn a_truncated_escape_is_kept_as_it_is() {
        assert_eq!(percent_decode("ab%4"), "ab%4");
        assert_eq!(percent_decode("%41%"), "A%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
