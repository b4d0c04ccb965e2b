//! Shared helpers: a scratch project with a pipeline file and a cache, run
//! through the library (to read the report) or the binary (to read output).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use foldwise::config;
use foldwise::exec::{Engine, NodeStatus, NullObserver, RunOptions, RunReport};
use foldwise::nodes::KINDS;
use foldwise::store::Store;
use serde_json::Value;

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), pipeline).unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn pipeline(&self) -> PathBuf {
        self.path().join("p.toml")
    }

    pub fn cache(&self) -> PathBuf {
        self.path().join("cache")
    }

    pub fn write(&self, pipeline: &str) {
        std::fs::write(self.pipeline(), pipeline).unwrap();
    }

    /// Replaces the first occurrence of `from` in the pipeline file.
    pub fn edit(&self, from: &str, to: &str) {
        let s = std::fs::read_to_string(self.pipeline()).unwrap();
        assert!(s.contains(from), "pipeline has no `{from}`");
        self.write(&s.replacen(from, to, 1));
    }

    pub fn run_with(&self, opts: RunOptions) -> RunReport {
        let p = config::load(&self.pipeline(), KINDS).unwrap_or_else(|e| {
            panic!("{}", config::render_diagnostic(&e, false, 100));
        });
        let store = Store::open(&self.cache()).unwrap();
        Engine::new(&p, &store).run(&opts, &NullObserver).unwrap()
    }

    pub fn run(&self) -> RunReport {
        self.run_with(RunOptions::default())
    }

    pub fn status(&self) -> Vec<NodeStatus> {
        let p = config::load(&self.pipeline(), KINDS).unwrap();
        let store = Store::open(&self.cache()).unwrap();
        let e = Engine::new(&p, &store);
        e.status(&vec![true; p.instances.len()])
    }

    /// `(instance, reason or "fresh")` for every instance.
    pub fn reasons(&self) -> Vec<(String, String)> {
        self.status()
            .into_iter()
            .map(|s| {
                let r = s.stale.map(|r| r.to_string()).unwrap_or("fresh".into());
                (s.instance, r)
            })
            .collect()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// [`Project::cli`] with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_foldwise"))
            .args(args)
            .current_dir(self.path())
            .env("FOLDWISE_CACHE", self.cache())
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }
}

pub fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Waits until `path` exists; fails the test after 60 s, so that a broken
/// guarantee fails rather than hangs.
pub fn wait_for(path: &Path) {
    let t = std::time::Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "timed out waiting for {path:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Starts `foldwise run p.toml --quiet` in the project, with extra
/// environment variables (the test-only pause hooks), output discarded.
pub fn spawn_run(p: &Project, env: &[(&str, &Path)]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_foldwise"));
    cmd.args(["run", "p.toml", "--quiet"])
        .current_dir(p.path())
        .env("FOLDWISE_CACHE", p.cache())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// `(instance, artifact digest)` of every instance that has an artifact.
pub fn digests(p: &Project) -> Vec<(String, String)> {
    p.status()
        .into_iter()
        .filter_map(|s| Some((s.instance, s.artifact?.digest)))
        .collect()
}

/// The value at `path` in `v`: object keys and array indices joined by dots
/// (`"nodes.0.seconds"`). Panics naming the first step that is missing, so a
/// check cannot pass because a field vanished (indexing a missing field
/// yields `null`, and two `null`s compare equal).
pub fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut at = v;
    for (n, step) in path.split('.').enumerate() {
        let next = match at {
            Value::Object(m) => m.get(step),
            Value::Array(a) => step.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        at = next.unwrap_or_else(|| {
            let prefix: Vec<&str> = path.split('.').take(n + 1).collect();
            let shown: String = v.to_string().chars().take(400).collect();
            panic!("no `{}` in {shown}", prefix.join("."))
        });
    }
    at
}

/// The number at `path` (see [`field`]); panics when missing or not a number.
pub fn num(v: &Value, path: &str) -> f64 {
    let x = field(v, path);
    x.as_f64()
        .unwrap_or_else(|| panic!("`{path}` is {x}, not a number"))
}

/// The string at `path` (see [`field`]); panics when missing or not a string.
pub fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    let x = field(v, path);
    x.as_str()
        .unwrap_or_else(|| panic!("`{path}` is {x}, not a string"))
}

/// The array at `path` (see [`field`]); panics when missing or not an array.
pub fn list<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    let x = field(v, path);
    x.as_array()
        .unwrap_or_else(|| panic!("`{path}` is {x}, not an array"))
}

/// A tiny training of `epochs` epochs named `name`: 40 generated plates,
/// one instance (a hold-out split), `svhn-small` at 32x64.
pub fn tiny_training(name: &str, epochs: u32) -> String {
    format!(
        r#"
[pipeline]
name = "{name}"
seed = 7

[nodes.plates]
kind = "synthetic"
count = 40
max_digits = 5

[nodes.folds]
kind = "split"
data = "plates"
method = "holdout"
ratio = 0.5

[nodes.cnn]
kind = "train"
data = "plates"
split = "folds"
model = {{ arch = "svhn-small", height = 32, width = 64 }}
epochs = {epochs}
batch = 8
"#
    )
}
