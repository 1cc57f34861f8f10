//! `docker-compose.yml` (five independent Redis nodes for users who prefer
//! containers) parses, publishes exactly the ports the README's
//! `REDLOCK_TEST_NODES` line uses, and does not restart a node empty.

use yaml_rust2::{Yaml, YamlLoader};

#[test]
fn compose_file_has_five_independent_nodes_on_6381_to_6385() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
    let text = std::fs::read_to_string(path).expect("docker-compose.yml");
    let docs = YamlLoader::load_from_str(&text).expect("valid YAML");
    let services = docs[0]["services"].as_hash().expect("a services map");
    assert_eq!(services.len(), 5);
    let mut ports: Vec<String> = Vec::new();
    for (name, service) in services {
        let name = name.as_str().unwrap_or_default();
        // The anchor is merged into each service.
        let merged = &service["<<"];
        let image = service["image"]
            .as_str()
            .or_else(|| merged["image"].as_str());
        assert!(
            image.is_some_and(|i| i.starts_with("redis")),
            "{name}: no redis image"
        );
        let command = match &service["command"] {
            Yaml::BadValue => &merged["command"],
            c => c,
        };
        let args: Vec<&str> = command
            .as_vec()
            .map(|v| v.iter().filter_map(Yaml::as_str).collect())
            .unwrap_or_default();
        // Restarted at once, a node must come back with its locks: an
        // append-only file synced on every write (see OPERATIONS.md).
        let restart = service["restart"]
            .as_str()
            .or_else(|| merged["restart"].as_str());
        if restart.is_some_and(|r| r != "no") {
            let value = |flag: &str| {
                args.iter()
                    .position(|a| *a == flag)
                    .and_then(|i| args.get(i + 1).copied())
            };
            assert_eq!(value("--appendonly"), Some("yes"), "{name}: {args:?}");
            assert_eq!(value("--appendfsync"), Some("always"), "{name}: {args:?}");
        }
        assert!(
            service["replicaof"].is_badvalue(),
            "{name} must be an independent master"
        );
        for p in service["ports"].as_vec().expect("ports") {
            ports.push(p.as_str().unwrap_or_default().to_owned());
        }
    }
    ports.sort();
    let expected: Vec<String> = (6381..=6385)
        .map(|p| format!("127.0.0.1:{p}:6379"))
        .collect();
    assert_eq!(ports, expected);

    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.starts_with("REDLOCK_TEST_NODES="))
        .expect("the README points the suites at the compose nodes");
    for p in 6381..=6385 {
        assert!(
            line.contains(&format!("127.0.0.1:{p}")),
            "README misses port {p}"
        );
    }
}
