//! The core's Lua scripts with their SHA1 digests, preloaded at connect time.

use fred::clients::Client;
use fred::interfaces::LuaInterface;
use redlock_core::Scripts;

/// One script: its source and the SHA1 that EVALSHA names it by.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub name: &'static str,
    pub source: String,
    pub sha: String,
}

impl Script {
    fn new(name: &'static str, source: &str) -> Self {
        Script {
            name,
            source: source.to_owned(),
            sha: fred::util::sha1_hash(source),
        }
    }
}

/// What a request does: which of the [`LoadedScripts`] it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Acquire,
    Release,
    Extend,
    Inspect,
    Fence,
}

/// The five scripts a node runs.
#[derive(Debug, Clone)]
pub(crate) struct LoadedScripts {
    pub acquire: Script,
    pub release: Script,
    pub extend: Script,
    pub inspect: Script,
    pub fence: Script,
}

impl LoadedScripts {
    pub(crate) fn new(scripts: &Scripts) -> Self {
        LoadedScripts {
            acquire: Script::new("acquire", &scripts.acquire),
            release: Script::new("release", &scripts.release),
            extend: Script::new("extend", &scripts.extend),
            inspect: Script::new("inspect", &scripts.inspect),
            fence: Script::new("fence", &scripts.fence),
        }
    }

    /// The script of `op`.
    pub(crate) fn get(&self, op: Op) -> &Script {
        match op {
            Op::Acquire => &self.acquire,
            Op::Release => &self.release,
            Op::Extend => &self.extend,
            Op::Inspect => &self.inspect,
            Op::Fence => &self.fence,
        }
    }

    pub(crate) fn all(&self) -> [&Script; 5] {
        [
            &self.acquire,
            &self.release,
            &self.extend,
            &self.inspect,
            &self.fence,
        ]
    }
}

/// Loads `script` into the server's script cache: on every primary of a
/// cluster, on the one server otherwise.
pub(crate) async fn load(
    client: &Client,
    clustered: bool,
    script: &Script,
) -> Result<(), fred::error::Error> {
    if clustered {
        client
            .script_load_cluster::<(), _>(script.source.as_str())
            .await
    } else {
        let sha: String = client.script_load(script.source.as_str()).await?;
        if !sha.eq_ignore_ascii_case(&script.sha) {
            tracing::warn!(
                script = script.name,
                local = %script.sha,
                server = %sha,
                "server computed another SHA1 for a redlock script; EVALSHA will fall back to EVAL"
            );
        }
        Ok(())
    }
}
