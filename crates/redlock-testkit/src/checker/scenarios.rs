//! The named runs: [`Scenario`] and [`scenario`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redlock_core::Node;

use crate::fault_proxy::FaultProxy;
use crate::server::RedisServer;

use super::*;

/// The named runs of [`scenario`]. The first five, and `ProxyLatency`,
/// must show no violation; the others are the cases Redlock does not protect
/// against, run with fencing (except `ExpireMajorityUnfenced`, which shows
/// the lost updates fencing prevents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scenario {
    /// `no-fault`: no fault.
    NoFault,
    /// `pause-minority`: 2 of 5 paused (SIGSTOP) in a loop.
    PauseMinority,
    /// `kill-minority`: 2 of 5 killed and restarted empty after the TTL.
    KillMinority,
    /// `proxy-chaos`: latency with jitter, connections reset.
    ProxyChaos,
    /// `client-pause`: holders stopped past their TTL before writing.
    ClientPause,
    /// `restart-majority`: 3 of 5 restarted empty together (fenced).
    RestartMajority,
    /// `expire-one`: the lock key deleted early on one node (fenced).
    ExpireOne,
    /// `expire-majority`: the lock key deleted early on 3 of 5 (fenced).
    ExpireMajority,
    /// `expire-majority-unfenced`: the same without fencing.
    ExpireMajorityUnfenced,
    /// `proxy-latency`: `proxy-chaos` without the resets.
    ProxyLatency,
}

impl Scenario {
    /// Every scenario, in the order of [`SCENARIOS`].
    pub const ALL: [Scenario; 10] = [
        Scenario::NoFault,
        Scenario::PauseMinority,
        Scenario::KillMinority,
        Scenario::ProxyChaos,
        Scenario::ClientPause,
        Scenario::RestartMajority,
        Scenario::ExpireOne,
        Scenario::ExpireMajority,
        Scenario::ExpireMajorityUnfenced,
        Scenario::ProxyLatency,
    ];

    /// The scenario's name, as on the checker's command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::NoFault => "no-fault",
            Scenario::PauseMinority => "pause-minority",
            Scenario::KillMinority => "kill-minority",
            Scenario::ProxyChaos => "proxy-chaos",
            Scenario::ClientPause => "client-pause",
            Scenario::RestartMajority => "restart-majority",
            Scenario::ExpireOne => "expire-one",
            Scenario::ExpireMajority => "expire-majority",
            Scenario::ExpireMajorityUnfenced => "expire-majority-unfenced",
            Scenario::ProxyLatency => "proxy-latency",
        }
    }

    /// Whether Redlock protects against this fault (zero violations
    /// expected).
    pub fn is_safe(self) -> bool {
        matches!(
            self,
            Scenario::NoFault
                | Scenario::PauseMinority
                | Scenario::KillMinority
                | Scenario::ProxyChaos
                | Scenario::ClientPause
                | Scenario::ProxyLatency
        )
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scenario {
    type Err = CheckError;

    fn from_str(name: &str) -> Result<Self, CheckError> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| CheckError::UnknownScenario(name.to_owned()))
    }
}

/// The names of [`Scenario::ALL`].
pub const SCENARIOS: &[&str] = &[
    "no-fault",
    "pause-minority",
    "kill-minority",
    "proxy-chaos",
    "client-pause",
    "restart-majority",
    "expire-one",
    "expire-majority",
    "expire-majority-unfenced",
    "proxy-latency",
];

/// Whether a scenario is one Redlock protects against (zero violations
/// expected).
pub fn is_safe_scenario(name: &str) -> bool {
    name.parse::<Scenario>().is_ok_and(Scenario::is_safe)
}

/// Runs one of [`SCENARIOS`] with at least `acquisitions` holds on five
/// fresh `redis-server` processes (stopped afterwards). `make` turns a URL
/// into a node of the adapter under test; every contender gets its own
/// nodes (see [`run_clients`]).
///
/// | scenario | fault |
/// |---|---|
/// | `no-fault` | none |
/// | `pause-minority` | 2 of 5 paused (SIGSTOP) 300 ms, resumed 300 ms, in a loop |
/// | `kill-minority` | 2 of 5 killed, restarted empty after 1.2 s (TTL 1 s), up 500 ms, in a loop |
/// | `proxy-chaos` | every node behind a [`FaultProxy`]: 1 ms + 0–2 ms jitter each way, one proxy's connections reset every 200 ms |
/// | `client-pause` | every 25th holder's task stopped for 500 ms (TTL 200 ms) between read and write |
/// | `restart-majority` | 3 of 5 killed and restarted empty together, 50 ms apart; holders hold 100 ms (fenced) |
/// | `expire-one` | the lock key deleted on node 1 whenever present, every 1 ms (fenced; counts exact-quorum holds) |
/// | `expire-majority` | the same on 3 of 5 nodes (fenced) |
/// | `expire-majority-unfenced` | the same without fencing |
/// | `proxy-latency` | `proxy-chaos` without the resets (separates the cost of latency from that of resets) |
pub async fn scenario<M, Fut>(name: &str, acquisitions: u64, make: M) -> Result<Report, CheckError>
where
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    scenario_with(name, Config::new(name).acquisitions(acquisitions), make).await
}

/// [`scenario`] from a base configuration (contenders, acquisitions, TTL,
/// ...); the scenario sets its own fault-specific fields on top.
pub async fn scenario_with<M, Fut>(name: &str, base: Config, make: M) -> Result<Report, CheckError>
where
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    run_scenario(name.parse()?, base, make).await
}

/// [`scenario`] as a test runs it: prints the report and returns it after
/// checking that it is complete (see [`Report::assert_complete`]).
///
/// # Panics
///
/// When the run could not be set up or is not complete.
pub async fn completed_scenario<M, Fut>(name: &str, acquisitions: u64, make: M) -> Report
where
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    let report = scenario(name, acquisitions, make)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("{report}");
    report.assert_complete(acquisitions);
    report
}

/// The `no-fault` run every adapter's tests make: 300 acquisitions with a
/// TTL (10 s) well above any scheduling stall of a loaded test machine
/// (holds are 1 ms; the TTL costs nothing), on nodes `make` builds. Prints
/// the report and returns it after checking that it is complete and safe,
/// that no key is left and that no lock was lost: with no fault, none may
/// be.
///
/// # Panics
///
/// When the run could not be set up or any of those checks fails.
pub async fn no_fault_is_clean<M, Fut>(make: M) -> Report
where
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    let config = Config::new("no-fault")
        .acquisitions(300)
        .ttl(Duration::from_secs(10));
    let report = scenario_with("no-fault", config, make)
        .await
        .unwrap_or_else(|e| panic!("no-fault: {e}"));
    println!("{report}");
    report.assert_complete(300);
    report.assert_safe();
    assert_eq!(report.keys_left, 0, "{report}");
    assert_eq!(report.lost_lock_detections, 0, "{report}");
    report
}

/// Runs `scenario` on five fresh servers, from a base configuration
/// (contenders, acquisitions, TTL, ...); the scenario sets its own
/// fault-specific fields on top.
pub async fn run_scenario<M, Fut>(
    scenario: Scenario,
    base: Config,
    make: M,
) -> Result<Report, CheckError>
where
    M: Fn(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Node>, String>>,
{
    let servers = blocking(|| {
        (0..5)
            .map(|_| RedisServer::start().map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .ok_or_else(|| CheckError::Setup("server start task failed".into()))?
    .map_err(|e| CheckError::Setup(e.to_string()))?;
    let mut proxies = Vec::new();
    if matches!(scenario, Scenario::ProxyChaos | Scenario::ProxyLatency) {
        for s in &servers {
            let p = FaultProxy::start(s.port())
                .await
                .map_err(|e| CheckError::Setup(format!("proxy: {e}")))?;
            proxies.push(Arc::new(p));
        }
    }
    let mut clients = Vec::with_capacity(base.contenders);
    for _ in 0..base.contenders.max(1) {
        let mut nodes = Vec::with_capacity(5);
        for (i, s) in servers.iter().enumerate() {
            let url = proxies.get(i).map_or_else(|| s.url(), |p| p.url());
            nodes.push(make(url).await.map_err(CheckError::Setup)?);
        }
        clients.push(nodes);
    }
    // Five servers, at least one client: the indexing below cannot fail.
    let nodes = clients.first().cloned().unwrap_or_default();
    if nodes.len() != servers.len() {
        return Err(CheckError::Setup("no client nodes".into()));
    }
    let unsafe_base = base.clone().fenced(true).hold(Duration::from_millis(20));
    let report = match scenario {
        Scenario::NoFault => run_clients(clients.clone(), base, |_| async {}).await,
        Scenario::PauseMinority => {
            let minority = servers[3..].to_vec();
            let config = base.min_duration(Duration::from_secs(1));
            run_clients(clients.clone(), config, move |stop| {
                pause_loop(
                    minority,
                    Duration::from_millis(300),
                    Duration::from_millis(300),
                    stop,
                )
            })
            .await
        }
        Scenario::KillMinority => {
            let minority = servers[3..].to_vec();
            let config = base.min_duration(Duration::from_secs(2));
            run_clients(clients.clone(), config, move |stop| {
                kill_restart_loop(
                    minority,
                    Duration::from_millis(1200),
                    Duration::from_millis(500),
                    stop,
                )
            })
            .await
        }
        Scenario::ProxyChaos | Scenario::ProxyLatency => {
            let all = proxies.clone();
            let config = base.min_duration(Duration::from_millis(500));
            // Resets every 200 ms, or (latency only) never within a run.
            let reset_every = if scenario == Scenario::ProxyChaos {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(1 << 30)
            };
            run_clients(clients.clone(), config, move |stop| {
                proxy_chaos(
                    all,
                    Duration::from_millis(1),
                    Duration::from_millis(2),
                    reset_every,
                    stop,
                )
            })
            .await
        }
        Scenario::ClientPause => {
            let config = base
                .ttl(Duration::from_millis(200))
                .client_pause(25, Duration::from_millis(500));
            run_clients(clients.clone(), config, |_| async {}).await
        }
        Scenario::RestartMajority => {
            let majority = servers[..3].to_vec();
            let config = unsafe_base.hold(Duration::from_millis(100));
            run_clients(clients.clone(), config, move |stop| {
                restart_loop(majority, Duration::from_millis(50), stop)
            })
            .await
        }
        Scenario::ExpireOne | Scenario::ExpireMajority | Scenario::ExpireMajorityUnfenced => {
            let targets: Vec<Arc<dyn Node>> = if scenario == Scenario::ExpireOne {
                vec![nodes[1].clone()]
            } else {
                nodes[..3].to_vec()
            };
            let mut config = unsafe_base;
            if scenario == Scenario::ExpireOne {
                config = config.count_holders(vec![1]);
            }
            if scenario == Scenario::ExpireMajorityUnfenced {
                config = config.fenced(false);
            }
            let key = config.key();
            run_clients(clients.clone(), config, move |stop| {
                expire_early(targets, key, Duration::from_millis(1), stop)
            })
            .await
        }
    };
    drop(proxies);
    // Servers stop when the last handle goes; the faults gave theirs back.
    drop(servers);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_table() {
        let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, SCENARIOS);
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>().ok(), Some(s));
            assert_eq!(s.to_string(), s.name());
        }
        let safe: Vec<&str> = SCENARIOS
            .iter()
            .copied()
            .filter(|n| is_safe_scenario(n))
            .collect();
        assert_eq!(
            safe,
            [
                "no-fault",
                "pause-minority",
                "kill-minority",
                "proxy-chaos",
                "client-pause",
                "proxy-latency"
            ]
        );
        assert!(!is_safe_scenario("no-such-run"));
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = "no-such-run".parse::<Scenario>().unwrap_err();
        assert!(matches!(err, CheckError::UnknownScenario(ref n) if n == "no-such-run"));
        assert!(
            err.to_string().contains("expire-majority-unfenced"),
            "{err}"
        );
    }
}
