//! The scripts a node runs, with their SHA1 digests for EVALSHA.

use redlock_core::Scripts;

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
}

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

    pub(crate) fn all(&self) -> [&Loaded; 5] {
        [
            &self.acquire,
            &self.release,
            &self.extend,
            &self.inspect,
            &self.fence,
        ]
    }
}

/// One request in lock terms, ready to become an EVALSHA.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub kind: Kind,
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

impl Call {
    pub(crate) fn ping() -> Call {
        Call {
            kind: Kind::Ping,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(crate) fn evalsha(&self, scripts: &LoadedScripts) -> redis::Cmd {
        if self.kind == Kind::Ping {
            return redis::cmd("PING");
        }
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&scripts.get(self.kind).sha);
        self.push_keys_args(&mut cmd);
        cmd
    }

    pub(crate) fn eval(&self, scripts: &LoadedScripts) -> redis::Cmd {
        if self.kind == Kind::Ping {
            return redis::cmd("PING");
        }
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&scripts.get(self.kind).source);
        self.push_keys_args(&mut cmd);
        cmd
    }

    /// The command for a single server: like [`evalsha`](Self::evalsha),
    /// except that a one-key acquire with the built-in script is sent as
    /// `SET key token NX PX ttl` (same atomic effect; replies `OK` / nil,
    /// which the node reads as 1 / 0).
    pub(crate) fn single_server(&self, scripts: &LoadedScripts) -> redis::Cmd {
        self.plain_set(scripts)
            .unwrap_or_else(|| self.evalsha(scripts))
    }

    fn plain_set(&self, scripts: &LoadedScripts) -> Option<redis::Cmd> {
        if self.kind != Kind::Acquire || !scripts.plain_acquire || self.keys.len() != 1 {
            return None;
        }
        let (key, token, ttl) = (self.keys.first()?, self.args.first()?, self.args.get(1)?);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(token).arg("NX").arg("PX").arg(ttl);
        Some(cmd)
    }

    fn push_keys_args(&self, cmd: &mut redis::Cmd) {
        cmd.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
    }

    /// The same call over a subset of the keys.
    #[cfg(feature = "cluster")]
    pub(crate) fn with_keys(&self, keys: Vec<String>) -> Call {
        Call {
            kind: self.kind,
            keys,
            args: self.args.clone(),
        }
    }
}
