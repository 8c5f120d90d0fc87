//! Running the real `botfleet` binary: a fresh working directory, an empty environment plus
//! what the test sets, a free port, and a kill on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_botfleet");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command with nothing from the test's environment but PATH.
pub fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

pub fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    command(dir, args, env).output().unwrap()
}

pub struct Server {
    child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts `botfleet serve` and waits until `/api/health/live` answers.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let log = dir.join(format!("serve-{port}.log"));
        let mut all: Vec<(&str, &str)> = env.to_vec();
        all.push(("BIND_ADDR", &bind));
        let child = command(dir, &["serve"], &all)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            base: format!("http://{bind}"),
            log,
        };
        let client = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "botfleet exited with {status} before serving:\n{}",
                    server.log_text()
                );
            }
            if client
                .get(format!("{}/api/health/live", server.base))
                .send()
                .await
                .is_ok()
            {
                return server;
            }
            assert!(
                Instant::now() < until,
                "botfleet did not start:\n{}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < until, "botfleet did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
