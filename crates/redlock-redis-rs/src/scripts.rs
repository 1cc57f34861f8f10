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
