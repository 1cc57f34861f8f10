//! The scripts a node runs, with their SHA1 digests for EVALSHA.

use redlock_core::Scripts;
use redlock_kit::native::{self, Capabilities};

/// Which script a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Acquire,
    Release,
    Extend,
    Inspect,
    Fence,
    /// Not a script: PING, to check a connection.
    Ping,
}

#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub source: String,
    pub sha: String,
}

/// The five scripts, each with its digest.
#[derive(Debug, Clone)]
pub(crate) struct LoadedScripts {
    acquire: Loaded,
    release: Loaded,
    extend: Loaded,
    inspect: Loaded,
    fence: Loaded,
    /// The acquire script is the built-in one, so a one-key acquire may be
    /// sent as `SET key token NX PX ttl`: the same atomic effect and reply
    /// (`OK` = 1, nil = 0) at a fraction of the server's cost of a script.
    plain_acquire: bool,
    /// The release script is the built-in one, so several releases in one
    /// pipeline may be sent as one [`RELEASE_MANY`] call.
    release_many: Option<Loaded>,
}

/// The built-in release script for several releases at once: the same
/// effect, per release, as [`redlock_core::scripts::RELEASE`], with one
/// script call instead of one per release (a script call is most of what
/// a release costs the server). `ARGV` holds, per release, its number of
/// keys and its token; `KEYS` holds their keys in turn. The reply has one
/// entry per release: the number of keys it deleted, or the error that
/// stopped it.
pub(crate) const RELEASE_MANY: &str = r#"-- redlock release, several at once
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

fn load(source: &str) -> Loaded {
    Loaded {
        source: source.to_string(),
        sha: redis::Script::new(source).get_hash().to_string(),
    }
}

impl LoadedScripts {
    pub(crate) fn new(scripts: &Scripts) -> Self {
        LoadedScripts {
            acquire: load(&scripts.acquire),
            release: load(&scripts.release),
            extend: load(&scripts.extend),
            inspect: load(&scripts.inspect),
            fence: load(&scripts.fence),
            plain_acquire: scripts.acquire == redlock_core::scripts::ACQUIRE,
            release_many: (scripts.release == redlock_core::scripts::RELEASE)
                .then(|| load(RELEASE_MANY)),
        }
    }

    pub(crate) fn get(&self, kind: Kind) -> &Loaded {
        match kind {
            Kind::Acquire => &self.acquire,
            Kind::Release => &self.release,
            Kind::Extend => &self.extend,
            Kind::Inspect => &self.inspect,
            Kind::Fence | Kind::Ping => &self.fence,
        }
    }

    /// Every script a connection should have loaded.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Loaded> {
        [
            &self.acquire,
            &self.release,
            &self.extend,
            &self.inspect,
            &self.fence,
        ]
        .into_iter()
        .chain(self.release_many.as_ref())
    }

    /// The script for several releases at once, when the release script is
    /// the built-in one.
    pub(crate) fn release_many(&self) -> Option<&Loaded> {
        self.release_many.as_ref()
    }
}

/// One request in lock terms, ready to become an EVALSHA: `KEYS` are the
/// keys, `ARGV` the token (if any) followed by the number (if any: a TTL in
/// ms, or a fencing floor).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub kind: Kind,
    pub keys: Vec<String>,
    pub token: Option<String>,
    pub number: Option<u64>,
}

impl Call {
    pub(crate) fn ping() -> Call {
        Call {
            kind: Kind::Ping,
            keys: Vec::new(),
            token: None,
            number: None,
        }
    }

    /// The number of `ARGV` entries.
    fn argc(&self) -> usize {
        usize::from(self.token.is_some()) + usize::from(self.number.is_some())
    }

    pub(crate) fn evalsha(&self, scripts: &LoadedScripts) -> redis::Cmd {
        self.script_call("EVALSHA", &scripts.get(self.kind).sha)
    }

    pub(crate) fn eval(&self, scripts: &LoadedScripts) -> redis::Cmd {
        self.script_call("EVAL", &scripts.get(self.kind).source)
    }

    /// `verb script numkeys keys… args…`, built in one allocation each for
    /// the bytes and the argument list.
    fn script_call(&self, verb: &str, script: &str) -> redis::Cmd {
        if self.kind == Kind::Ping {
            return redis::cmd("PING");
        }
        let data = verb.len()
            + script.len()
            + 40
            + self.keys.iter().map(String::len).sum::<usize>()
            + self.token.as_ref().map_or(0, String::len);
        let mut cmd = redis::Cmd::with_capacity(3 + self.keys.len() + self.argc(), data);
        cmd.arg(verb).arg(script).arg(self.keys.len());
        for k in &self.keys {
            cmd.arg(k);
        }
        if let Some(token) = &self.token {
            cmd.arg(token);
        }
        if let Some(n) = self.number {
            cmd.arg(n);
        }
        cmd
    }

    /// The command for a single server: like [`evalsha`](Self::evalsha),
    /// except that a one-key acquire with the built-in script is sent as
    /// `SET key token NX PX ttl` (same atomic effect; replies `OK` / nil,
    /// which the node reads as 1 / 0), and a one-key extend as the
    /// server's native `SET … IFEQ` where it has one. A native release is
    /// two commands: see [`native`](Self::native).
    pub(crate) fn single_server(&self, scripts: &LoadedScripts, caps: Capabilities) -> redis::Cmd {
        let extend = || (self.kind == Kind::Extend).then(|| self.native(scripts, caps));
        self.plain_set(scripts)
            .or_else(|| extend().flatten())
            .unwrap_or_else(|| self.evalsha(scripts))
    }

    /// The server's own compare-and-delete (a one-key release) or
    /// compare-and-set (a one-key extend) for this call, where the server
    /// has it and the script is the built-in one (see
    /// [`redlock_kit::native`]). A native release is followed by its
    /// [`announce`](Self::announce).
    pub(crate) fn native(&self, scripts: &LoadedScripts, caps: Capabilities) -> Option<redis::Cmd> {
        let token = self.token.as_deref()?;
        let command = match self.kind {
            Kind::Release => native::release(caps, &scripts.release.source, &self.keys, token)?,
            Kind::Extend => native::extend(
                caps,
                &scripts.extend.source,
                &self.keys,
                token,
                self.number?,
            )?,
            _ => return None,
        };
        Some(to_cmd(&command))
    }

    /// Whether this call is a release sent natively (and so followed by its
    /// announcement).
    pub(crate) fn native_release(&self, scripts: &LoadedScripts, caps: Capabilities) -> bool {
        self.kind == Kind::Release && self.native(scripts, caps).is_some()
    }

    /// The announcement after a native release: `PUBLISH` on the key's
    /// release channel, as the release script does.
    pub(crate) fn announce(&self) -> redis::Cmd {
        let key = self.keys.first().map_or("", String::as_str);
        to_cmd(&native::announce(key, self.token.as_deref().unwrap_or("")))
    }

    fn plain_set(&self, scripts: &LoadedScripts) -> Option<redis::Cmd> {
        if self.kind != Kind::Acquire || !scripts.plain_acquire || self.keys.len() != 1 {
            return None;
        }
        let (key, token, ttl) = (self.keys.first()?, self.token.as_ref()?, self.number?);
        let mut cmd = redis::Cmd::with_capacity(6, 40 + key.len() + token.len());
        cmd.arg("SET");
        cmd.arg(key).arg(token).arg("NX").arg("PX").arg(ttl);
        Some(cmd)
    }
}

/// A kit [`native::Command`] as the `redis` crate's command.
pub(crate) fn to_cmd(command: &native::Command<'_>) -> redis::Cmd {
    let mut cmd = redis::cmd(command.name);
    for arg in &command.args {
        cmd.arg(arg.as_ref());
    }
    cmd
}
