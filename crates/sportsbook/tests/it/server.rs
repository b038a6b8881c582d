//! `Server`: the real `sportsbook serve` as a child process on 127.0.0.1:0, with the address
//! and the demo credentials parsed from what it prints, and a small blocking HTTP/1.1 client
//! over `std::net::TcpStream` (enough for JSON requests, and quick to compile).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a server may take to start (a debug build hashes the demo password with argon2).
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sportsbook"));
    // Hermetic: nothing from the environment running the tests leaks into the server.
    for name in [
        "SPORTSBOOK_ADMIN_KEY",
        "SPORTSBOOK_JWT_SECRET",
        "SPORTSBOOK_JWT_SECRET_FILE",
        "SPORTSBOOK_METRICS_KEY",
        "RUST_LOG",
    ] {
        command.env_remove(name);
    }
    command
}

pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`
    pub address: String,
    /// What the server printed before it was ready (the banner).
    pub banner: Vec<String>,
    pub log_path: PathBuf,
    /// Later lines of standard output.
    pub lines: mpsc::Receiver<String>,
}

/// What the demo printed: the player's credentials and the operator key.
#[derive(Clone, Debug)]
pub struct DemoCredentials {
    pub username: String,
    pub password: String,
    pub operator_key: String,
}

impl Server {
    /// Starts `serve --listen 127.0.0.1:0 --data-dir DIR` with `extra` arguments and `env`, and
    /// waits until it prints its address (and, with `--demo`, the operator key line).
    pub fn start(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let log_path = data_dir.with_extension(format!("log-{}", unique()));
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = binary();
        command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir).args(extra);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::from(log)).spawn().expect("spawn the server");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = mpsc::channel();
        // Keeps reading so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let demo = extra.contains(&"--demo");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut banner = Vec::new();
        let mut address = None;
        loop {
            let ready =
                address.is_some() && (!demo || banner.iter().any(|line: &String| line.starts_with("operator key:")));
            if ready {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("listening on http://") {
                        address = Some(rest.trim().to_string());
                    }
                    banner.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "the server did not start; it printed {banner:?}; log:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        }
        Server { child, address: address.unwrap_or_default(), banner, log_path, lines }
    }

    pub fn demo_credentials(&self) -> DemoCredentials {
        let field = |prefix: &str| {
            self.banner.iter().find_map(|line| line.strip_prefix(prefix)).map(str::trim).map(str::to_string)
        };
        let player = field("demo player:").expect("the demo player line");
        let words: Vec<&str> = player.split_whitespace().collect();
        assert_eq!(words.len(), 4, "demo player line: {player}");
        assert_eq!((words[0], words[2]), ("username", "password"), "demo player line: {player}");
        DemoCredentials {
            username: words[1].to_string(),
            password: words[3].to_string(),
            operator_key: field("operator key:").expect("the operator key line"),
        }
    }

    /// The server's process id (to read its `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        request(&self.address, "GET", path, token, None)
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        request(&self.address, "POST", path, token, Some(body))
    }

    /// Logs in; returns the access token.
    pub fn login(&self, username: &str, password: &str) -> String {
        let (status, body) =
            self.post("/v1/auth/login", None, &serde_json::json!({"username": username, "password": password}));
        assert_eq!(status, 200, "login as {username}: {body}");
        body["access_token"].as_str().expect("access token").to_string()
    }

    /// `kill -9`: the process dies at once, whatever it was doing.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let signalled = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().expect("kill");
        assert!(signalled.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, self.log());
            }
            assert!(Instant::now() < deadline, "the server did not stop after SIGTERM; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and the JSON body
/// (`Value::Null` when empty, a string when not JSON).
pub fn request(address: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).unwrap_or_else(|error| panic!("connect to {address}: {error}"));
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("receive");
    let text = String::from_utf8_lossy(&response).to_string();
    let (head, payload) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let payload = if chunked { dechunk(payload) } else { payload.to_string() };
    let value =
        if payload.is_empty() { Value::Null } else { serde_json::from_str(&payload).unwrap_or(Value::String(payload)) };
    (status, value)
}

fn dechunk(mut payload: &str) -> String {
    let mut body = String::new();
    while let Some((size, rest)) = payload.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        body.push_str(&rest[..size]);
        payload = rest[size..].trim_start_matches("\r\n");
    }
    body
}
