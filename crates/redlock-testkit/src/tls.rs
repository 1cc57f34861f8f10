//! A `redis-server` that only speaks TLS, with a certificate authority and a
//! server certificate generated for the test.
//!
//! The certificates are made with the `openssl` command (a CA, and a server
//! certificate for `localhost` and `127.0.0.1` signed by it, EC P-256, valid
//! for two days) in a scratch directory that is removed with the server. The
//! server listens on a free loopback port with `--tls-port` and no plain
//! port (`--port 0`), and does not ask clients for certificates. Readiness
//! is checked with `redis-cli --tls --cacert` (so `redis-server` and
//! `redis-cli` must be built with TLS, as Debian's are).
//!
//! ```no_run
//! use redlock_testkit::tls::TlsRedisServer;
//!
//! let server = TlsRedisServer::start()?;
//! println!("connect to {} trusting {}", server.url(), server.ca_path().display());
//! let root_cert: Vec<u8> = server.ca_pem()?; // for redis::TlsCertificates
//! # let _ = root_cert;
//! # Ok::<(), redlock_testkit::ServerError>(())
//! ```

use std::fmt;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::server::{cli_binary, scratch_dir, server_binary, Result, ServerError};

/// How long the server may take to answer PING over TLS.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports are tried before giving up.
const PORT_ATTEMPTS: usize = 8;

const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = redlock-testkit

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

/// Runs `openssl` with the whitespace-separated `args` in `dir`; an error
/// with its output when it fails.
fn openssl(dir: &Path, args: &str) -> Result<()> {
    let args: Vec<&str> = args.split_whitespace().collect();
    let program = binary("OPENSSL", "openssl");
    let out = Command::new(&program)
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(ServerError::missing(&program))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ServerError::Settle(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The files of a test certificate authority and a server certificate
/// signed by it.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate (PEM): what clients trust.
    pub ca_cert: PathBuf,
    /// The server certificate (PEM), for `localhost` and `127.0.0.1`.
    pub server_cert: PathBuf,
    /// The server's private key (PEM).
    pub server_key: PathBuf,
}

impl TlsFiles {
    /// Generates a CA and a server certificate signed by it into `dir`
    /// (`ca.crt`, `server.crt`, `server.key`, and the CA's key and a CSR).
    pub fn generate(dir: &Path) -> Result<TlsFiles> {
        let ca_cert = generate_ca(dir, "ca")?;
        fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG)?;
        let serial = rand::random::<u32>() | 1;
        openssl(
            dir,
            "req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
             -keyout server.key -out server.csr -config openssl.cnf -subj /CN=localhost",
        )?;
        openssl(
            dir,
            &format!(
                "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -set_serial {serial} -days 2 \
                 -out server.crt -extfile openssl.cnf -extensions server_ext"
            ),
        )?;
        Ok(TlsFiles {
            ca_cert,
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        })
    }
}

/// Generates a self-signed CA as `<name>.crt` / `<name>.key` in `dir` and
/// returns the certificate's path. A CA that signed nothing is what a test
/// needs to show that an untrusted server is refused.
pub fn generate_ca(dir: &Path, name: &str) -> Result<PathBuf> {
    fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG)?;
    let crt = format!("{name}.crt");
    openssl(
        dir,
        &format!(
            "req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
             -keyout {name}.key -out {crt} -days 2 -config openssl.cnf -extensions ca_ext \
             -subj /CN=redlock-testkit-CA"
        ),
    )?;
    Ok(dir.join(crt))
}

/// A `redis-server` listening only for TLS on a free loopback port, with
/// certificates generated for it. Killed (and its files removed) on drop.
pub struct TlsRedisServer {
    port: u16,
    dir: PathBuf,
    files: TlsFiles,
    child: Mutex<Option<Child>>,
}

impl fmt::Debug for TlsRedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsRedisServer")
            .field("port", &self.port)
            .field("dir", &self.dir)
            .finish()
    }
}

impl TlsRedisServer {
    /// Generates the certificates, starts the server and waits until it
    /// answers PING over TLS.
    pub fn start() -> Result<Self> {
        let dir = scratch_dir("tls")?;
        match Self::start_in(&dir) {
            Ok(s) => Ok(s),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn start_in(dir: &Path) -> Result<Self> {
        let files = TlsFiles::generate(dir)?;
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let server = TlsRedisServer {
                port,
                dir: dir.to_path_buf(),
                files: files.clone(),
                child: Mutex::new(None),
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e @ ServerError::MissingBinary { .. }) => {
                    server.stop();
                    std::mem::forget(server);
                    return Err(e);
                }
                Err(e) => {
                    // Keep the directory for the next try.
                    server.stop();
                    std::mem::forget(server);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| ServerError::Settle("could not start a TLS server".into())))
    }

    fn spawn(&self) -> Result<()> {
        let program = server_binary();
        let log = self.dir.join(format!("redis-tls-{}.log", self.port));
        let log_file = fs::File::create(&log)?;
        let log_err = log_file.try_clone()?;
        let child = Command::new(&program)
            .args(["--port", "0"])
            .args(["--tls-port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(&self.files.server_cert)
            .arg("--tls-key-file")
            .arg(&self.files.server_key)
            .arg("--tls-ca-cert-file")
            .arg(&self.files.ca_cert)
            .args(["--tls-auth-clients", "no"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--logfile", ""])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(ServerError::missing(&program))?;
        *self.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let end = Instant::now() + START_TIMEOUT;
        loop {
            if self.exited() {
                return Err(ServerError::Start {
                    port: self.port,
                    detail: format!("process exited: {}", log_tail(&log)),
                });
            }
            if matches!(self.cli(&["PING"]).as_deref(), Ok("PONG")) {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(ServerError::Start {
                    port: self.port,
                    detail: format!(
                        "no PONG over TLS within {START_TIMEOUT:?}: {}",
                        log_tail(&log)
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exited(&self) -> bool {
        match self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs one command with `redis-cli` over TLS (trusting the test CA)
    /// and returns its raw output, trimmed.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let program = cli_binary();
        let out = Command::new(&program)
            .args(["--tls", "--cacert"])
            .arg(&self.files.ca_cert)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(ServerError::missing(&program))?;
        if !out.status.success() {
            return Err(ServerError::Settle(format!(
                "redis-cli {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The TLS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rediss://127.0.0.1:<port>`: verifying the server needs the test CA
    /// ([`ca_pem`](Self::ca_pem)).
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// `rediss://127.0.0.1:<port>/#insecure`: TLS without verifying the
    /// certificate (the `redis` crate needs its `tls-rustls-insecure`
    /// feature for it).
    pub fn insecure_url(&self) -> String {
        format!("{}/#insecure", self.url())
    }

    /// The generated certificate files.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The CA certificate's path.
    pub fn ca_path(&self) -> &Path {
        &self.files.ca_cert
    }

    /// The CA certificate (PEM bytes), e.g. for `redis::TlsCertificates`'s
    /// `root_cert`.
    pub fn ca_pem(&self) -> Result<Vec<u8>> {
        Ok(fs::read(&self.files.ca_cert)?)
    }

    /// The directory holding the certificates and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_a_tls_only_server() {
        let server = TlsRedisServer::start().expect("TLS redis-server");
        assert_eq!(server.cli(&["SET", "k", "v"]).unwrap(), "OK");
        assert_eq!(server.cli(&["GET", "k"]).unwrap(), "v");
        assert!(server
            .ca_pem()
            .unwrap()
            .starts_with(b"-----BEGIN CERTIFICATE-----"));
        // No plain-text port: a plain PING on the TLS port gets no PONG.
        let plain =
            crate::server::raw_command(server.port(), None, &["PING"], Duration::from_millis(500));
        assert!(
            !matches!(plain, Ok(crate::server::Reply::Status(ref s)) if s == "PONG"),
            "answered plain text: {plain:?}"
        );
        let dir = server.dir().to_path_buf();
        drop(server);
        assert!(!dir.exists(), "scratch directory left behind");
    }
}
