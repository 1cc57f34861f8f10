//! The Lua scripts every node runs, in one place.
//!
//! Each operation of the [`Node`](crate::Node) trait is one script so that it
//! is atomic on the server. Every adapter runs these same texts, and a user can
//! substitute their own through [`Scripts`] (node-redlock's `lockScript`,
//! `unlockScript` and `extendScript` options).
//!
//! The calling convention, which a substitute script must keep:
//!
//! | script | `KEYS` | `ARGV` | reply |
//! |---|---|---|---|
//! | acquire | resource keys | token, TTL in ms | `1` all set, `0` none set (a key exists) |
//! | release | resource keys | token | number of keys deleted |
//! | extend | resource keys | token, TTL in ms | `1` all extended, `0` none (a key is not ours) |
//! | inspect | resource keys | — | per key `{pttl, value or nil}` |
//! | fence | counter keys | floor | largest counter before the write (as a string) |

use std::borrow::Cow;

/// Sets every key to the token with a TTL, only if none of them exists.
pub const ACQUIRE: &str = r#"-- redlock acquire: all keys or none
for i = 1, #KEYS do
  if redis.call('exists', KEYS[i]) == 1 then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('set', KEYS[i], ARGV[1], 'px', ARGV[2])
end
return 1
"#;

/// Deletes every key that still holds the token and announces it on the
/// key's release channel (see [`release_channel`]).
pub const RELEASE: &str = r#"-- redlock release: only what holds our token
local n = 0
for i = 1, #KEYS do
  if redis.call('get', KEYS[i]) == ARGV[1] then
    redis.call('del', KEYS[i])
    redis.call('publish', 'redlock:release:' .. KEYS[i], ARGV[1])
    n = n + 1
  end
end
return n
"#;

/// The release script of a Redis Cluster node: deletes every key that
/// still holds the token, like [`RELEASE`], and announces it with a sharded
/// `SPUBLISH` (Redis 7.0+, Valkey) on [`sharded_release_channel`] of the
/// key, which lies in the key's slot, so only the shard that owns the key
/// carries the message. Where the server has no `SPUBLISH` (Redis 6) the
/// announcement fails silently and the release still counts; waiters then
/// poll. A key whose channel cannot share its slot is not announced.
pub const RELEASE_SHARDED: &str = r#"-- redlock release, announced on the key's shard
local function channel(key)
  local open = string.find(key, '{', 1, true)
  if open then
    local close = string.find(key, '}', open + 1, true)
    if close and close > open + 1 then
      return 'redlock:release:' .. key
    end
  end
  if string.find(key, '}', 1, true) then
    return nil
  end
  return 'redlock:release:{' .. key .. '}'
end
local n = 0
for i = 1, #KEYS do
  if redis.call('get', KEYS[i]) == ARGV[1] then
    redis.call('del', KEYS[i])
    local ch = channel(KEYS[i])
    if ch then
      redis.pcall('spublish', ch, ARGV[1])
    end
    n = n + 1
  end
end
return n
"#;

/// Sets a new TTL on every key, only if every key still holds the token.
/// Never creates a key.
pub const EXTEND: &str = r#"-- redlock extend: all keys or none, never recreate
for i = 1, #KEYS do
  if redis.call('get', KEYS[i]) ~= ARGV[1] then
    return 0
  end
end
for i = 1, #KEYS do
  redis.call('pexpire', KEYS[i], ARGV[2])
end
return 1
"#;

/// Reads `{pttl, value}` of every key.
pub const INSPECT: &str = r#"-- redlock inspect
local r = {}
for i = 1, #KEYS do
  r[i] = { redis.call('pttl', KEYS[i]), redis.call('get', KEYS[i]) }
end
return r
"#;

/// Reads fencing counters and raises them all to a floor when it is above
/// the largest; returns the largest value seen before (as a string, so values
/// above 2^53 survive Lua's numbers for comparison up to that range).
pub const FENCE: &str = r#"-- redlock fence counters
local max = 0
for i = 1, #KEYS do
  local v = tonumber(redis.call('get', KEYS[i]) or '0') or 0
  if v > max then max = v end
end
local floor = tonumber(ARGV[1]) or 0
if floor > max then
  for i = 1, #KEYS do
    redis.call('set', KEYS[i], ARGV[1])
  end
end
return tostring(max)
"#;

/// The channel on which the release script announces that `key` was freed.
pub fn release_channel(key: &str) -> String {
    format!("redlock:release:{key}")
}

/// The sharded channel ([`RELEASE_SHARDED`]) on which a Redis Cluster node
/// announces that `key` was freed: a channel in the same hash slot as the
/// key, so that the release script may `SPUBLISH` on it. A key with a hash
/// tag keeps its [`release_channel`] (the same tag); any other key is
/// wrapped in braces (`redlock:release:{key}`), which makes the whole key
/// the channel's tag. `None` for the rare key that has no hash tag but
/// contains `}`: no channel name shares its slot, so its waiters poll.
///
/// ```
/// use redlock_core::scripts::sharded_release_channel;
/// use redlock_core::slot::hash_slot;
///
/// let channel = sharded_release_channel("job").unwrap();
/// assert_eq!(channel, "redlock:release:{job}");
/// assert_eq!(hash_slot(channel.as_bytes()), hash_slot(b"job"));
/// assert_eq!(sharded_release_channel("a{7}b").unwrap(), "redlock:release:a{7}b");
/// assert_eq!(sharded_release_channel("a{}b}"), None);
/// ```
pub fn sharded_release_channel(key: &str) -> Option<String> {
    if crate::slot::hash_tag(key.as_bytes()).len() < key.len() {
        Some(release_channel(key))
    } else if key.contains('}') {
        None
    } else {
        Some(format!("redlock:release:{{{key}}}"))
    }
}

/// The four scripts a node runs. `Scripts::default()` holds the built-in
/// texts; replace any of them to customise behaviour while keeping the calling
/// convention described in the [module docs](self).
///
/// ```
/// use redlock_core::Scripts;
///
/// let scripts = Scripts::default().with_acquire(
///     "return redis.call('set', KEYS[1], ARGV[1], 'nx', 'px', ARGV[2]) and 1 or 0",
/// );
/// assert!(scripts.acquire.contains("nx"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripts {
    /// The acquire script.
    pub acquire: Cow<'static, str>,
    /// The release script.
    pub release: Cow<'static, str>,
    /// The extend script.
    pub extend: Cow<'static, str>,
    /// The inspect script.
    pub inspect: Cow<'static, str>,
    /// The fencing-counter script.
    pub fence: Cow<'static, str>,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            acquire: Cow::Borrowed(ACQUIRE),
            release: Cow::Borrowed(RELEASE),
            extend: Cow::Borrowed(EXTEND),
            inspect: Cow::Borrowed(INSPECT),
            fence: Cow::Borrowed(FENCE),
        }
    }
}

impl Scripts {
    /// Replaces the acquire script.
    pub fn with_acquire(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.acquire = source.into();
        self
    }

    /// Replaces the release script.
    pub fn with_release(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.release = source.into();
        self
    }

    /// Replaces the extend script.
    pub fn with_extend(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.extend = source.into();
        self
    }

    /// Replaces the fencing-counter script.
    pub fn with_fence(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.fence = source.into();
        self
    }

    /// Replaces the inspect script.
    pub fn with_inspect(mut self, source: impl Into<Cow<'static, str>>) -> Self {
        self.inspect = source.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::hash_slot;

    #[test]
    fn a_sharded_channel_lies_in_its_keys_slot() {
        let keys = ["job", "a{7}b", "{x}", "a{b", "{", "x:{y}:{z}", "ü{ß}"];
        for key in keys {
            let channel = sharded_release_channel(key).expect(key);
            assert_eq!(
                hash_slot(channel.as_bytes()),
                hash_slot(key.as_bytes()),
                "{key} → {channel}"
            );
        }
        for key in ["a}b", "{}a", "a{}", "}"] {
            assert_eq!(sharded_release_channel(key), None, "{key}");
        }
    }

    #[test]
    fn the_sharded_script_names_the_same_channels() {
        // The Lua `channel` function mirrors `sharded_release_channel`.
        assert!(RELEASE_SHARDED.contains("'redlock:release:' .. key"));
        assert!(RELEASE_SHARDED.contains("'redlock:release:{' .. key .. '}'"));
        assert!(RELEASE_SHARDED.contains("redis.pcall('spublish'"));
        assert!(!RELEASE_SHARDED.contains("'publish'"));
    }
}
