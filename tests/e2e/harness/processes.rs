//! Running the `pgsink` binary: to completion ([`Ctx::run_pgsink`]) or as a long-running
//! `pgsink run` ([`SinkRun`] → [`Sink`]), whose stdout and stderr go to files in the test's work
//! directory so that [`Ctx`] can print them when the test fails.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::{pg_password, Ctx, EXIT, PGSINK};

impl Ctx {
    /// A `pgsink run` to start: its logs are `<label>.stderr` and `<label>.stdout`.
    pub fn sink(&self, label: &str) -> SinkRun<'_> {
        SinkRun {
            ctx: self,
            label: label.to_string(),
            config: None,
            env: Vec::new(),
        }
    }

    /// Runs pgsink to completion (`convert`, `sql`, ...) with `stdin` as its input.
    pub fn run_pgsink(&self, args: &[&str], stdin: &[u8], timeout: Duration) -> Output {
        let mut cmd = pgsink_command();
        cmd.args(args);
        run_with_timeout(cmd, stdin, timeout)
    }
}

/// How to start one `pgsink run`: its configuration (text or file) and extra environment.
#[must_use = "a SinkRun does nothing until start()"]
pub struct SinkRun<'a> {
    ctx: &'a Ctx,
    label: String,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl SinkRun<'_> {
    /// The configuration as TOML text, written to `<label>.toml` in the work directory.
    pub fn toml(mut self, text: &str) -> Self {
        self.config = Some(self.ctx.write(&format!("{}.toml", self.label), text));
        self
    }

    /// A configuration file of any format pgsink reads.
    pub fn file(mut self, path: &Path) -> Self {
        self.config = Some(path.to_path_buf());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn start(self) -> Sink {
        let label = self.label;
        let config = self
            .config
            .unwrap_or_else(|| panic!("{label}: SinkRun without a configuration"));
        let stderr_path = self.ctx.log_file(&label, "stderr");
        let stdout_path = self.ctx.log_file(&label, "stdout");
        let mut cmd = pgsink_command();
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("create stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("create stderr file"))
            .envs(self.env);
        let child = cmd.spawn().expect("spawn pgsink run");
        self.ctx
            .note(format!("{label}: started pgsink run (pid {})", child.id()));
        Sink {
            label,
            child,
            exited: None,
            stderr_path,
            started: Instant::now(),
        }
    }
}

fn pgsink_command() -> Command {
    let mut cmd = Command::new(PGSINK);
    let log = std::env::var("PGSINK_TEST_RUST_LOG").unwrap_or_else(|_| "info".into());
    cmd.env("RUST_LOG", log);
    match pg_password() {
        Some(pw) => cmd.env("PGSINK_DB_PASSWORD", pw),
        None => cmd.env_remove("PGSINK_DB_PASSWORD"),
    };
    cmd
}

/// Runs a command with `stdin`, collecting its output; kills it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn command");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// A running `pgsink run`. Dropping it kills the process (SIGKILL) if it still runs.
pub struct Sink {
    pub label: String,
    child: Child,
    exited: Option<ExitStatus>,
    stderr_path: PathBuf,
    started: Instant,
}

impl Sink {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// Fails the test if the process has ended.
    pub fn assert_running(&mut self, while_doing: &str) {
        if let Some(status) = self.try_status() {
            panic!(
                "{}: pgsink exited ({status}) after {:.1} s while {while_doing}; last stderr:\n{}",
                self.label,
                self.started.elapsed().as_secs_f64(),
                tail(&self.stderr(), 40)
            );
        }
    }

    /// Lets the sink run for `d`, failing the test if it exits meanwhile (`while_doing` says
    /// what was going on).
    pub fn stays_up(&mut self, d: Duration, while_doing: &str) {
        let t0 = Instant::now();
        while t0.elapsed() < d {
            self.assert_running(while_doing);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Sends SIGTERM (through `kill -TERM`).
    pub fn sigterm(&mut self) {
        if !self.is_running() {
            return;
        }
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        self.exited = Some(self.child.wait().expect("wait after kill -9"));
    }

    /// Waits for the process to exit; kills it and fails the test after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{}: pgsink did not exit within {timeout:?}; last stderr:\n{}",
                    self.label,
                    tail(&self.stderr(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, then waits (at most [`EXIT`]) and requires exit status 0.
    pub fn stop_ok(&mut self) {
        self.sigterm();
        let t0 = Instant::now();
        let status = self.wait(EXIT);
        assert!(
            status.success(),
            "{}: pgsink exited with {status} after SIGTERM (expected 0); last stderr:\n{}",
            self.label,
            tail(&self.stderr(), 40)
        );
        eprintln!(
            "{}: exited 0 {:.1} s after SIGTERM",
            self.label,
            t0.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Polls `cond` every 100 ms until it holds; fails the test after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    loop {
        if cond() {
            return t0.elapsed();
        }
        if t0.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lines of `text` that contain `needle`.
pub fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Waits until a line containing `needle` appears in the sink's stderr for the `n`-th time
/// (fails if the sink exits first; the line may be its last before a deliberate exit).
pub fn wait_log(ctx: &Ctx, sink: &mut Sink, needle: &str, n: usize, timeout: Duration) {
    let took = wait_for(
        timeout,
        &format!("{}: log line {needle:?} #{n}", sink.label),
        || {
            if lines_with(&sink.stderr(), needle) >= n {
                return true;
            }
            sink.assert_running(&format!("waiting for {needle:?}"));
            false
        },
    );
    ctx.note(format!(
        "{}: {needle:?} #{n} after {:.1} s",
        sink.label,
        took.as_secs_f64()
    ));
}
