//! A real HTTP proxy for the tests: Debian's tinyproxy (`bash .ci/test`
//! installs it), run in the foreground on 127.0.0.1 with a config of its own
//! in a temp dir, killed on drop. Its log (`LogLevel Connect`) records every
//! request it carries.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running tinyproxy.
pub struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    /// A proxy that tunnels only to `connect_ports` and, when `auth` is
    /// given, asks for that user name and password.
    pub fn start(connect_ports: &[u16], auth: Option<(&str, &str)>) -> Self {
        let bin = which_tinyproxy();
        // tinyproxy cannot bind port 0: take a free port and retry if another
        // process takes it first.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let log = dir.path().join("tinyproxy.log");
            let mut conf = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\n\
                 LogFile \"{}\"\nLogLevel Connect\nDisableViaHeader Yes\n",
                log.display()
            );
            for p in connect_ports {
                conf.push_str(&format!("ConnectPort {p}\n"));
            }
            if let Some((user, pass)) = auth {
                conf.push_str(&format!("BasicAuth {user} {pass}\n"));
            }
            let conf_path = dir.path().join("tinyproxy.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let mut child = Command::new(&bin)
                .arg("-d")
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tinyproxy runs");
            if wait_listening(&mut child, port) {
                return Tinyproxy {
                    child,
                    port,
                    log,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("tinyproxy did not start on a free port after 20 tries");
    }

    /// `http://127.0.0.1:{port}`, with `userinfo@` when given.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("http://{u}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The request lines tinyproxy logged (`CONNECT 127.0.0.1:443 HTTP/1.1`,
    /// `GET http://… HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.split_once("): ")
                    .filter(|_| l.contains("Request (file descriptor"))
            })
            .map(|(_, r)| r.to_owned())
            .collect()
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which_tinyproxy() -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = PathBuf::from(dir).join("tinyproxy");
        if p.exists() {
            return p;
        }
    }
    panic!("tinyproxy is missing: bash .ci/test installs it (apt-get install -y tinyproxy)");
}

/// Whether the child listens on `port` before it exits (a port taken by
/// someone else makes tinyproxy exit).
fn wait_listening(child: &mut Child, port: u16) -> bool {
    for _ in 0..200 {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}
