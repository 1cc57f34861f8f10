//! One request in lock terms ([`Call`]), and the scripts a node runs with
//! their SHA1 digests for `EVALSHA` ([`LoadedScripts`]).
//!
//! A [`Call`] is what an adapter's [`Node`](redlock_core::Node) methods
//! turn into before it reaches the [`queue`](crate::queue); the
//! [`plan`](crate::plan) turns a batch of them into wire commands.

use redlock_core::Scripts;

/// Which script a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The acquire script: `KEYS` the keys, `ARGV` token and TTL (ms).
    Acquire,
    /// The release script: `KEYS` the keys, `ARGV` the token.
    Release,
    /// The extend script: `KEYS` the keys, `ARGV` token and TTL (ms).
    Extend,
    /// The inspect script: `KEYS` the keys, no `ARGV`.
    Inspect,
    /// The fence script: `KEYS` the keys, `ARGV` the floor.
    Fence,
    /// Not a script: `PING`, to check a connection.
    Ping,
}

/// One request in lock terms, ready to become a script call: `KEYS` are the
/// keys, `ARGV` the token (if any) followed by the number (if any: a TTL in
/// ms, or a fencing floor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Which script.
    pub kind: Kind,
    /// The keys (`KEYS`), already prefixed.
    pub keys: Vec<String>,
    /// The lock's token, for acquire, release and extend.
    pub token: Option<String>,
    /// The TTL in ms (acquire, extend) or the fencing floor (fence).
    pub number: Option<u64>,
}

impl Call {
    /// A call of `kind` on `keys`.
    pub fn new(kind: Kind, keys: &[String], token: Option<&str>, number: Option<u64>) -> Call {
        Call {
            kind,
            keys: keys.to_vec(),
            token: token.map(str::to_owned),
            number,
        }
    }

    /// `PING`.
    pub fn ping() -> Call {
        Call {
            kind: Kind::Ping,
            keys: Vec::new(),
            token: None,
            number: None,
        }
    }

    /// The script's `ARGV`: the token, then the number, each if present
    /// (the number in decimal).
    pub fn args(&self) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
        self.token
            .as_deref()
            .map(std::borrow::Cow::Borrowed)
            .into_iter()
            .chain(self.number.map(|n| std::borrow::Cow::Owned(n.to_string())))
    }

    /// The number of `ARGV` entries.
    pub fn argc(&self) -> usize {
        usize::from(self.token.is_some()) + usize::from(self.number.is_some())
    }
}

/// A script's source and its SHA1 digest (hex), as `EVALSHA` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The Lua source, for `EVAL` and `SCRIPT LOAD`.
    pub source: String,
    /// The lowercase hex SHA1 of the source, for `EVALSHA`.
    pub sha: String,
}

impl Script {
    /// `source` with its digest.
    ///
    /// ```
    /// let s = redlock_kit::call::Script::new("return 1");
    /// assert_eq!(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    /// ```
    pub fn new(source: &str) -> Script {
        Script {
            source: source.to_owned(),
            sha: sha1_smol::Sha1::from(source).digest().to_string(),
        }
    }
}

/// The built-in release script for several releases at once: the same
/// effect, per release, as [`redlock_core::scripts::RELEASE`], with one
/// script call instead of one per release (a script call is most of what
/// a release costs the server). `ARGV` holds, per release, its number of
/// keys and its token; `KEYS` holds their keys in turn. The reply has one
/// entry per release: the number of keys it deleted, or the error that
/// stopped it.
pub const RELEASE_MANY: &str = r#"-- redlock release, several at once
local r, k = {}, 0
for j = 1, #ARGV, 2 do
  local n, token, deleted = tonumber(ARGV[j]), ARGV[j + 1], 0
  for i = k + 1, k + n do
    local v = redis.pcall('get', KEYS[i])
    if type(v) == 'table' and v.err then
      deleted = v
      break
    end
    if v == token then
      redis.call('del', KEYS[i])
      redis.call('publish', 'redlock:release:' .. KEYS[i], token)
      deleted = deleted + 1
    end
  end
  k = k + n
  r[#r + 1] = deleted
end
return r
"#;

/// [`RELEASE_MANY`] for a Redis Cluster node: each release announced like
/// [`redlock_core::scripts::RELEASE_SHARDED`] does, with a sharded
/// `SPUBLISH` on the key's
/// [`sharded_release_channel`](redlock_core::scripts::sharded_release_channel).
pub const RELEASE_MANY_SHARDED: &str = r#"-- redlock release, several at once, announced on the keys' shard
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
local r, k = {}, 0
for j = 1, #ARGV, 2 do
  local n, token, deleted = tonumber(ARGV[j]), ARGV[j + 1], 0
  for i = k + 1, k + n do
    local v = redis.pcall('get', KEYS[i])
    if type(v) == 'table' and v.err then
      deleted = v
      break
    end
    if v == token then
      redis.call('del', KEYS[i])
      local ch = channel(KEYS[i])
      if ch then
        redis.pcall('spublish', ch, token)
      end
      deleted = deleted + 1
    end
  end
  k = k + n
  r[#r + 1] = deleted
end
return r
"#;

/// The built-in script for several acquires and extends at once, run in
/// their order: per call the same effect as [`redlock_core::scripts::ACQUIRE`]
/// or [`redlock_core::scripts::EXTEND`], with one script call instead of
/// one command per call (what each command costs a client, in its own
/// bookkeeping, is most of what a batch of acquires costs it). `ARGV`
/// holds, per call, `a` (acquire) or `e` (extend), its number of keys, its
/// token and its TTL in ms; `KEYS` holds their keys in turn. A one-key
/// acquire is one `SET key token NX PX ttl` inside the script, as it is
/// outside (the same effect as the acquire script). The reply has
/// one entry per call: `1` (all keys taken or extended), `0` (none: a key
/// exists, or is not ours), or the error that stopped it.
pub const WRITE_MANY: &str = r#"-- redlock acquire and extend, several at once, in order
local r, k = {}, 0
for j = 1, #ARGV, 4 do
  local kind, n, token, ttl = ARGV[j], tonumber(ARGV[j + 1]), ARGV[j + 2], ARGV[j + 3]
  local answer = 1
  if kind == 'a' and n == 1 then
    local v = redis.pcall('set', KEYS[k + 1], token, 'nx', 'px', ttl)
    if type(v) == 'table' and v.err then
      answer = v
    elseif not v then
      answer = 0
    end
    n = 0
    k = k + 1
  end
  for i = k + 1, k + n do
    local v
    if kind == 'a' then
      v = redis.pcall('exists', KEYS[i])
      if v == 1 then answer = 0 end
    else
      v = redis.pcall('get', KEYS[i])
      if v ~= token then answer = 0 end
    end
    if type(v) == 'table' and v.err then answer = v end
    if answer ~= 1 then break end
  end
  if answer == 1 then
    for i = k + 1, k + n do
      local v
      if kind == 'a' then
        v = redis.pcall('set', KEYS[i], token, 'px', ttl)
      else
        v = redis.pcall('pexpire', KEYS[i], ttl)
      end
      if type(v) == 'table' and v.err then
        answer = v
        break
      end
    end
  end
  k = k + n
  r[#r + 1] = answer
end
return r
"#;

/// The five lock scripts of a node, each with its digest, and what the
/// built-in ones allow (the one-key `SET NX PX` acquire, merged releases).
#[derive(Debug, Clone)]
pub struct LoadedScripts {
    acquire: Script,
    release: Script,
    extend: Script,
    inspect: Script,
    fence: Script,
    /// The acquire script is the built-in one, so a one-key acquire may be
    /// sent as `SET key token NX PX ttl`: the same atomic effect and reply
    /// (`OK` = 1, nil = 0) at a fraction of the server's cost of a script.
    plain_acquire: bool,
    /// The release script is the built-in one, so several releases in one
    /// pipeline may be sent as one [`RELEASE_MANY`] call.
    release_many: Option<Script>,
    /// The acquire or the extend script is the built-in one, so several
    /// of those calls may be sent as one [`WRITE_MANY`] call.
    write_many: Option<Script>,
    /// The extend script is the built-in one.
    builtin_extend: bool,
}

impl LoadedScripts {
    /// `scripts` with their digests.
    pub fn new(scripts: &Scripts) -> Self {
        LoadedScripts {
            acquire: Script::new(&scripts.acquire),
            release: Script::new(&scripts.release),
            extend: Script::new(&scripts.extend),
            inspect: Script::new(&scripts.inspect),
            fence: Script::new(&scripts.fence),
            plain_acquire: scripts.acquire == redlock_core::scripts::ACQUIRE,
            release_many: (scripts.release == redlock_core::scripts::RELEASE)
                .then(|| Script::new(RELEASE_MANY)),
            write_many: (scripts.acquire == redlock_core::scripts::ACQUIRE
                || scripts.extend == redlock_core::scripts::EXTEND)
                .then(|| Script::new(WRITE_MANY)),
            builtin_extend: scripts.extend == redlock_core::scripts::EXTEND,
        }
    }

    /// These scripts for a Redis Cluster node: the built-in release scripts
    /// announce with a sharded `SPUBLISH` on the key's slot
    /// ([`redlock_core::scripts::RELEASE_SHARDED`], [`RELEASE_MANY_SHARDED`])
    /// instead of a `PUBLISH` that the cluster would copy to every node. A
    /// release script of the user's own is kept as it is.
    ///
    /// ```
    /// use redlock_kit::call::{Kind, LoadedScripts};
    ///
    /// let scripts = LoadedScripts::new(&redlock_core::Scripts::default()).sharded();
    /// assert!(scripts.get(Kind::Release).source.contains("spublish"));
    /// ```
    pub fn sharded(mut self) -> Self {
        if self.release.source == redlock_core::scripts::RELEASE {
            self.release = Script::new(redlock_core::scripts::RELEASE_SHARDED);
            self.release_many = Some(Script::new(RELEASE_MANY_SHARDED));
        }
        self
    }

    /// The script a call of `kind` runs (`PING` runs none: the fence script
    /// is returned for it, and never sent).
    pub fn get(&self, kind: Kind) -> &Script {
        match kind {
            Kind::Acquire => &self.acquire,
            Kind::Release => &self.release,
            Kind::Extend => &self.extend,
            Kind::Inspect => &self.inspect,
            Kind::Fence | Kind::Ping => &self.fence,
        }
    }

    /// Every script a connection should have loaded.
    pub fn all(&self) -> impl Iterator<Item = &Script> {
        [
            &self.acquire,
            &self.release,
            &self.extend,
            &self.inspect,
            &self.fence,
        ]
        .into_iter()
        .chain(self.release_many.as_ref())
        .chain(self.write_many.as_ref())
    }

    /// The script for several releases at once, when the release script is
    /// the built-in one.
    pub fn release_many(&self) -> Option<&Script> {
        self.release_many.as_ref()
    }

    /// The script for several acquires and extends at once, when the
    /// acquire or the extend script is the built-in one.
    pub fn write_many(&self) -> Option<&Script> {
        self.write_many.as_ref()
    }

    /// Whether a call of `kind` may be one of a [`WRITE_MANY`] call's
    /// calls: an acquire with the built-in acquire script, an extend with
    /// the built-in extend script.
    pub fn merges_write(&self, kind: Kind) -> bool {
        match kind {
            Kind::Acquire => self.plain_acquire,
            Kind::Extend => self.builtin_extend,
            _ => false,
        }
    }

    /// Whether a one-key acquire may be sent as `SET key token NX PX ttl`
    /// (the acquire script is the built-in one).
    pub fn plain_acquire(&self) -> bool {
        self.plain_acquire
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_what_the_server_computes() {
        // `SCRIPT LOAD "return 1"` answers this digest.
        assert_eq!(
            Script::new("return 1").sha,
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        let loaded = LoadedScripts::new(&Scripts::default());
        assert_eq!(loaded.all().count(), 7);
        assert!(loaded.plain_acquire());
        assert!(loaded.merges_write(Kind::Acquire) && loaded.merges_write(Kind::Extend));
        assert!(!loaded.merges_write(Kind::Release));
        let custom = LoadedScripts::new(
            &Scripts::default()
                .with_release("return 0")
                .with_acquire("return 1"),
        );
        assert_eq!(custom.all().count(), 6);
        assert!(!custom.plain_acquire());
        assert!(custom.release_many().is_none());
        assert!(!custom.merges_write(Kind::Acquire));
        assert!(
            custom.merges_write(Kind::Extend),
            "the extend script is built in"
        );
        let neither = LoadedScripts::new(
            &Scripts::default()
                .with_acquire("return 1")
                .with_extend("return 1"),
        );
        assert!(neither.write_many().is_none());
        assert!(!neither.merges_write(Kind::Extend));
    }

    #[test]
    fn sharded_scripts_announce_on_the_same_channels_as_the_single_release() {
        let loaded = LoadedScripts::new(&Scripts::default()).sharded();
        let one = &loaded.get(Kind::Release).source;
        let many = &loaded.release_many().expect("built-in").source;
        // The same channel naming in both scripts.
        let naming = |s: &str| {
            let start = s.find("local function channel").expect("named");
            let end = s[start..].find("\nend\n").expect("ends") + start;
            s[start..end].to_owned()
        };
        assert_eq!(naming(one), naming(many));
        assert!(!many.contains("'publish'"));
        let custom = LoadedScripts::new(&Scripts::default().with_release("return 0")).sharded();
        assert_eq!(custom.get(Kind::Release).source, "return 0");
        assert!(custom.release_many().is_none());
    }

    #[test]
    fn args_are_token_then_number() {
        let keys = ["a".to_owned()];
        let c = Call::new(Kind::Acquire, &keys, Some("t"), Some(30));
        assert_eq!(c.args().collect::<Vec<_>>(), ["t", "30"]);
        assert_eq!(c.argc(), 2);
        let f = Call::new(Kind::Fence, &keys, None, Some(7));
        assert_eq!(f.args().collect::<Vec<_>>(), ["7"]);
        assert_eq!(Call::ping().argc(), 0);
    }
}
