//! The `command` node kind: runs an external program as a cached pipeline
//! step. The program writes its artifact into the folder named by
//! `FOLDWISE_OUT`; foldwise stores it like any other artifact.
//!
//! How the program is run:
//! - `argv = ["prog", "arg", …]` runs `prog` directly (no shell); a relative
//!   `prog` containing a `/` is taken relative to the pipeline file's folder,
//!   a bare name is looked up on `PATH`. `shell = "…"` runs the text with
//!   `sh -c`. Exactly one of the two is given ([`Kind::check`] says so).
//! - The working directory is the pipeline file's folder; stdin is empty; the
//!   process inherits foldwise's environment plus:
//!   - `FOLDWISE_OUT`: the (absolute, empty) output folder;
//!   - `FOLDWISE_INPUT_<NAME>` for each `inputs` entry (`NAME` upper-cased,
//!     every character other than `A-Z`, `0-9` replaced by `_`): the
//!     upstream artifact folder, or for a gathered reference (`x[*]`) all the
//!     folders joined like `PATH` (`:`);
//!   - `FOLDWISE_INPUT_<NAME>_PART`: the part file (a fold) when the input
//!     has one (for a gathered reference: when every member has one, joined
//!     the same way);
//!   - `FOLDWISE_PARAMS`: the `params` table as JSON, and
//!     `FOLDWISE_PARAM_<NAME>` for each scalar in it (strings as they are,
//!     numbers and booleans as JSON text);
//!   - `FOLDWISE_SEED`, `FOLDWISE_INSTANCE`, `FOLDWISE_THREADS` (the
//!     threads the run gave it: what its `threads` declares, 1 when unset,
//!     at most the budget), and `FOLDWISE_FOLD` when the instance follows
//!     a fan-out;
//!   - the `env` table (names starting with `FOLDWISE_` are refused by
//!     `check`, so it cannot shadow the above).
//!
//! Guarantees:
//! - the key covers everything declared: argv or shell text, `params`,
//!   `env`, the contents of `deps` (declared as external inputs) and the
//!   input digests. Anything else the program reads is the user's business:
//!   declare it in `deps`;
//! - stdout and stderr are captured, never written into the artifact (logs
//!   would make it non-deterministic); each line is shown as progress;
//! - a non-zero exit fails the node with ``command `NAME` exited with status
//!   N`` followed by the last [`STDERR_TAIL`] lines of stderr; a program that
//!   cannot start fails with ``cannot start `NAME`: REASON``.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use serde_json::Value;

use crate::kind::resolve_path;
#[allow(unused_imports)]
use crate::kind::schema::{float_range, int_min, int_range, Dflt, Param, Ty, RATIO};
use crate::kind::{codes, Appetite, Kind, NodeError, ParamIssue, Progress, RequiredPath, RunCtx};

/// How many of the last stderr lines a failure message shows.
pub const STDERR_TAIL: usize = 20;
/// Output lines longer than this (bytes) are cut.
const MAX_LINE: usize = 2000;

pub struct Command;

impl Kind for Command {
    fn name(&self) -> &'static str {
        "command"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Runs an external program with caching. It receives its inputs' artifact folders and its own output folder through environment variables (`FOLDWISE_OUT`, `FOLDWISE_INPUT_<NAME>`, …); its key covers the argv (or shell text), the declared parameters, the declared dependency files and the input digests."
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn check(&self, params: &Value) -> Vec<ParamIssue> {
        check(params)
    }
    fn external_inputs(&self, params: &Value, base_dir: &Path) -> Vec<(String, PathBuf)> {
        params
            .get("deps")
            .and_then(Value::as_array)
            .map(|deps| {
                deps.iter()
                    .enumerate()
                    .filter_map(|(i, d)| {
                        d.as_str()
                            .map(|s| (format!("deps[{i}]"), resolve_path(base_dir, s)))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The `deps`, and the program when `argv[0]` is a path.
    fn required_paths(&self, params: &Value, base_dir: &Path) -> Vec<RequiredPath> {
        let mut paths: Vec<RequiredPath> = self
            .external_inputs(params, base_dir)
            .into_iter()
            .map(|(param, path)| RequiredPath {
                param,
                path,
                executable: false,
            })
            .collect();
        let argv0 = params.pointer("/argv/0").and_then(Value::as_str);
        if let Some(prog) = argv0.filter(|p| p.contains('/')) {
            paths.push(RequiredPath {
                param: "argv[0]".into(),
                path: resolve_path(base_dir, prog),
                executable: true,
            });
        }
        paths
    }
    fn appetite(&self, params: &Value) -> Appetite {
        let n = params.get("threads").and_then(Value::as_u64).unwrap_or(1);
        Appetite::Fixed(usize::try_from(n).unwrap_or(usize::MAX))
    }
    fn unkeyed(&self) -> &'static [&'static str] {
        &["threads"]
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        let p: CommandParams = ctx.typed()?;
        run(ctx, &p)
    }
}

static PARAMS: &[Param] = &[
    Param { name: "argv", ty: Ty::List(&Ty::Str), default: Dflt::Optional, doc: "Program and arguments, run without a shell. Exactly one of `argv` and `shell`." },
    Param { name: "shell", ty: Ty::Str, default: Dflt::Optional, doc: "A command line run by `sh -c`, when a shell is wanted." },
    Param { name: "inputs", ty: Ty::Map(&Ty::Ref(&[])), default: Dflt::Value("{}"), doc: "Upstream nodes by name; each becomes `FOLDWISE_INPUT_<NAME>`." },
    Param { name: "params", ty: Ty::Map(&Ty::Any), default: Dflt::Value("{}"), doc: "Declared parameters: hashed, and passed as `FOLDWISE_PARAMS` (JSON) and `FOLDWISE_PARAM_<NAME>`." },
    Param { name: "deps", ty: Ty::List(&Ty::Path), default: Dflt::Value("[]"), doc: "Files or folders the program reads (its script, say): hashed by content." },
    Param { name: "env", ty: Ty::Map(&Ty::Str), default: Dflt::Value("{}"), doc: "Extra environment variables (hashed)." },
    Param { name: "threads", ty: int_min(1), default: Dflt::Optional, doc: "Threads the program uses: the run reserves this many of its thread budget (at most all of it) and passes the number it gave as `FOLDWISE_THREADS`. Unset means 1. Not hashed: it may change what the program takes, never what it writes." },
];

#[derive(Debug, Deserialize)]
struct CommandParams {
    argv: Option<Vec<String>>,
    shell: Option<String>,
    inputs: BTreeMap<String, Value>,
    params: serde_json::Map<String, Value>,
    deps: Vec<String>,
    env: BTreeMap<String, String>,
}

/// `name` as an environment-variable suffix: upper-cased, every character
/// other than an ASCII letter or digit replaced by `_`.
pub fn env_suffix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn issue(path: impl Into<String>, message: impl Into<String>, help: Option<&str>) -> ParamIssue {
    ParamIssue {
        path: path.into(),
        message: message.into(),
        help: help.map(str::to_string),
    }
}

fn check(params: &Value) -> Vec<ParamIssue> {
    let mut issues = Vec::new();
    let argv = params.get("argv").and_then(Value::as_array);
    let shell = params.get("shell").and_then(Value::as_str);
    match (argv, shell) {
        (Some(_), Some(_)) => issues.push(issue(
            "shell",
            "give either `argv` or `shell`, not both",
            Some("`argv` runs a program directly; `shell` runs a command line through `sh -c`"),
        )),
        (None, None) => issues.push(issue(
            "argv",
            "one of `argv` and `shell` is required",
            Some("e.g. argv = [\"python3\", \"prep.py\"], or shell = \"python3 prep.py | gzip > $FOLDWISE_OUT/x.gz\""),
        )),
        (Some(a), None) if a.is_empty() => issues.push(issue(
            "argv",
            "`argv` is empty: it must name a program",
            None,
        )),
        (Some(a), None) if a[0].as_str() == Some("") => {
            issues.push(issue("argv", "the program name (`argv[0]`) is empty", None))
        }
        (None, Some(s)) if s.trim().is_empty() => {
            issues.push(issue("shell", "`shell` is empty", None))
        }
        _ => {}
    }
    // Names that would collide once turned into environment variables.
    for (table, prefix, with_part) in [
        ("inputs", "FOLDWISE_INPUT_", true),
        ("params", "FOLDWISE_PARAM_", false),
    ] {
        let Some(map) = params.get(table).and_then(Value::as_object) else {
            continue;
        };
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for name in map.keys() {
            let base = env_suffix(name);
            let mut vars = vec![base.clone()];
            if with_part {
                vars.push(format!("{base}_PART"));
            }
            for var in vars {
                if let Some(other) = seen.get(&var) {
                    issues.push(issue(
                        format!("{table}.{name}"),
                        format!("`{other}` and `{name}` both become `{prefix}{var}`"),
                        Some("rename one of them"),
                    ));
                } else {
                    seen.insert(var, name);
                }
            }
        }
    }
    if let Some(env) = params.get("env").and_then(Value::as_object) {
        for name in env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                issues.push(issue(
                    format!("env.{name}"),
                    format!("`{name}` is not a valid environment-variable name"),
                    None,
                ));
            } else if name.starts_with("FOLDWISE_") {
                issues.push(issue(
                    format!("env.{name}"),
                    "names starting with `FOLDWISE_` are set by foldwise",
                    None,
                ));
            }
        }
    }
    issues
}

/// Shortens `s` to at most `max` characters.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// One path as it is; several joined like `PATH` (a path containing the
/// separator cannot be joined: an error).
fn join(paths: &[PathBuf], what: &str) -> Result<OsString, NodeError> {
    if let [one] = paths {
        return Ok(absolute(one).into_os_string());
    }
    std::env::join_paths(paths.iter().map(|p| absolute(p))).map_err(|e| {
        NodeError::new(
            "foldwise::command::input",
            format!("cannot pass {what}: {e}"),
        )
    })
}

/// Where a program is looked for.
const PROGRAM_HELP: &str = "a bare program name is looked up on PATH; a name with a `/` is taken relative to the pipeline file's folder";

/// The program to run, prepared but not configured.
struct Program {
    cmd: std::process::Command,
    /// The name errors use for it.
    name: String,
    /// Whether a bare program name is looked up on `PATH`.
    searched: bool,
}

fn run(ctx: &RunCtx<'_>, p: &CommandParams) -> Result<(), NodeError> {
    let Program {
        mut cmd,
        name,
        searched,
    } = program(ctx.base_dir, p)?;
    for (i, d) in p.deps.iter().enumerate() {
        let path = resolve_path(ctx.base_dir, d);
        if !path.exists() {
            return Err(
                NodeError::file(&path, format!("`deps[{i}]` does not exist"))
                    .with_help("`deps` paths are relative to the pipeline file's folder"),
            );
        }
    }
    cmd.current_dir(ctx.base_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    set_environment(&mut cmd, ctx, p)?;
    let (status, err_tail) = run_to_end(cmd, &name, searched, ctx.progress)?;
    if status.success() {
        return Ok(());
    }
    Err(failure(&name, status, &err_tail))
}

/// `argv[0]` with its arguments (relative to `base_dir` when it contains a
/// `/`), or `sh -c TEXT`.
fn program(base_dir: &Path, p: &CommandParams) -> Result<Program, NodeError> {
    match (&p.argv, &p.shell) {
        (Some(argv), None) if !argv.is_empty() && !argv[0].is_empty() => {
            let prog = &argv[0];
            let searched = !prog.contains('/');
            let path = if searched {
                PathBuf::from(prog)
            } else {
                resolve_path(base_dir, prog)
            };
            let mut cmd = std::process::Command::new(path);
            cmd.args(&argv[1..]);
            Ok(Program {
                cmd,
                name: prog.clone(),
                searched,
            })
        }
        (None, Some(text)) => {
            let mut cmd = std::process::Command::new("sh");
            cmd.arg("-c").arg(text);
            Ok(Program {
                cmd,
                name: format!("sh -c {:?}", shorten(text, 60)),
                searched: true,
            })
        }
        _ => Err(NodeError::new(
            "foldwise::command::params",
            "internal: `command` needs exactly one of `argv` and a non-empty `shell`",
        )),
    }
}

/// The `env` table and the `FOLDWISE_*` variables the module docs list.
fn set_environment(
    cmd: &mut std::process::Command,
    ctx: &RunCtx<'_>,
    p: &CommandParams,
) -> Result<(), NodeError> {
    cmd.envs(&p.env);
    cmd.env("FOLDWISE_OUT", absolute(ctx.out));
    for input in p.inputs.keys() {
        let key = format!("inputs.{input}");
        let arts = ctx
            .inputs
            .get(&key)
            .ok_or_else(|| NodeError::new(codes::INPUT, format!("missing input `{key}`")))?;
        let var = format!("FOLDWISE_INPUT_{}", env_suffix(input));
        let dirs: Vec<PathBuf> = arts.iter().map(|a| a.dir.clone()).collect();
        cmd.env(&var, join(&dirs, &var)?);
        let parts: Vec<PathBuf> = arts.iter().filter_map(|a| a.part.clone()).collect();
        if !parts.is_empty() && parts.len() == arts.len() {
            let var = format!("{var}_PART");
            cmd.env(&var, join(&parts, &var)?);
        }
    }
    cmd.env(
        "FOLDWISE_PARAMS",
        serde_json::to_string(&p.params).expect("params serialise"),
    );
    for (k, v) in &p.params {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => continue,
        };
        cmd.env(format!("FOLDWISE_PARAM_{}", env_suffix(k)), text);
    }
    cmd.env("FOLDWISE_SEED", ctx.seed.to_string())
        .env("FOLDWISE_INSTANCE", ctx.instance)
        .env("FOLDWISE_THREADS", ctx.threads.to_string());
    match ctx.fold {
        Some(f) => cmd.env("FOLDWISE_FOLD", f.to_string()),
        None => cmd.env_remove("FOLDWISE_FOLD"),
    };
    Ok(())
}

/// Starts the program and waits for it, showing its output as progress;
/// returns its exit status and the last [`STDERR_TAIL`] lines of stderr.
fn run_to_end(
    mut cmd: std::process::Command,
    name: &str,
    searched: bool,
    progress: &dyn Progress,
) -> Result<(std::process::ExitStatus, VecDeque<String>), NodeError> {
    let mut child = cmd.spawn().map_err(|e| {
        let not_found = e.kind() == std::io::ErrorKind::NotFound;
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound if searched => "program not found on PATH".to_string(),
            std::io::ErrorKind::NotFound => "program not found".to_string(),
            _ => e.to_string(),
        };
        let err = NodeError::new(
            "foldwise::command::start",
            format!("cannot start `{name}`: {reason}"),
        );
        if not_found {
            err.with_help(PROGRAM_HELP)
        } else {
            err
        }
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (status, err_tail) = std::thread::scope(|s| {
        let out_reader = s.spawn(move || read_tail(stdout, 0, progress));
        let err_reader = s.spawn(move || read_tail(stderr, STDERR_TAIL, progress));
        let status = child.wait();
        let _ = out_reader.join();
        let tail = err_reader.join().unwrap_or_default();
        (status, tail)
    });
    let status = status.map_err(|e| {
        NodeError::new(
            "foldwise::command::wait",
            format!("waiting for `{name}`: {e}"),
        )
    })?;
    Ok((status, err_tail))
}

/// ``command `NAME` exited with status N`` (or the signal that killed it),
/// then the last lines of its stderr.
fn failure(name: &str, status: std::process::ExitStatus, err_tail: &VecDeque<String>) -> NodeError {
    let how = match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            match status.signal() {
                Some(sig) => format!("was killed by signal {sig}"),
                None => format!("failed ({status})"),
            }
        }
    };
    let mut msg = format!("command `{name}` {how}");
    if err_tail.is_empty() {
        msg.push_str(" (nothing on stderr)");
    } else {
        msg.push_str("; last lines of its stderr:");
        for line in err_tail {
            msg.push_str("\n  ");
            msg.push_str(line);
        }
    }
    NodeError::new("foldwise::command::failed", msg)
}

/// Reads `stream` to its end, showing each line as progress and keeping the
/// last `keep` lines (each cut to [`MAX_LINE`] bytes).
fn read_tail(stream: impl Read, keep: usize, progress: &dyn Progress) -> VecDeque<String> {
    let mut r = BufReader::new(stream);
    let mut tail = VecDeque::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match (&mut r).take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let complete = buf.last() == Some(&b'\n');
        let mut line = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\n', '\r'])
            .to_string();
        if !complete && n == MAX_LINE {
            // Skip the rest of an overlong line.
            line.push('…');
            let mut skip = Vec::new();
            loop {
                skip.clear();
                match (&mut r).take(8192).read_until(b'\n', &mut skip) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if skip.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
        }
        progress.message(&line);
        if keep > 0 {
            tail.push_back(line);
            if tail.len() > keep {
                tail.pop_front();
            }
        }
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::{InputArtifact, NoProgress};
    use serde_json::json;
    use std::fs;

    fn full(params: Value) -> Value {
        let mut p = json!({"inputs": {}, "params": {}, "deps": [], "env": {}});
        for (k, v) in params.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    }

    struct Run {
        base: tempfile::TempDir,
        out: tempfile::TempDir,
    }

    fn run_cmd(
        base: tempfile::TempDir,
        params: Value,
        inputs: BTreeMap<String, Vec<InputArtifact>>,
        fold: Option<usize>,
    ) -> (Run, Result<(), NodeError>) {
        let p = full(params);
        assert!(check(&p).is_empty(), "{:?}", check(&p));
        let out = tempfile::tempdir().unwrap();
        let ctx = RunCtx {
            instance: "cmd[2]",
            fold,
            params: &p,
            seed: 77,
            base_dir: base.path(),
            inputs: &inputs,
            out: out.path(),
            progress: &NoProgress,
            threads: 3,
            work: None,
            derived: Path::new("/nonexistent/derived"),
            device: crate::kind::DeviceChoice::Auto,
        };
        let r = Command.run(&ctx);
        (Run { base, out }, r)
    }

    /// Runs `params` from an empty pipeline folder, with no inputs and no fold.
    fn run_plain(params: Value) -> (Run, Result<(), NodeError>) {
        run_cmd(tempfile::tempdir().unwrap(), params, BTreeMap::new(), None)
    }

    /// The error text of running `params` as [`run_plain`] does.
    fn failure_text(params: Value) -> String {
        run_plain(params).1.unwrap_err().to_string()
    }

    fn env_file(out: &Path) -> BTreeMap<String, String> {
        fs::read_to_string(out.join("env.txt"))
            .unwrap()
            .split('\0')
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn art(node: &str, dir: &str, part: Option<&str>) -> InputArtifact {
        InputArtifact {
            digest: String::new(),
            node: node.into(),
            dir: PathBuf::from(dir),
            part: part.map(PathBuf::from),
        }
    }

    #[test]
    fn passes_the_environment() {
        let mut inputs = BTreeMap::new();
        inputs.insert(
            "inputs.train-data".to_string(),
            vec![art("folds", "/cache/a", Some("/cache/a/folds/fold-2.json"))],
        );
        inputs.insert(
            "inputs.models".to_string(),
            vec![
                art("m[0]", "/cache/m0", None),
                art("m[1]", "/cache/m1", None),
            ],
        );
        let (r, res) = run_cmd(
            tempfile::tempdir().unwrap(),
            json!({
                "shell": "env -0 > \"$FOLDWISE_OUT/env.txt\"; pwd > \"$FOLDWISE_OUT/pwd.txt\"; echo to-stdout; echo to-stderr >&2",
                "inputs": {"train-data": "folds", "models": "m[*]"},
                "params": {"lr": 0.5, "epochs": 3, "name": "a b", "flag": true, "list": [1, 2]},
                "env": {"MY_VAR": "hello"},
            }),
            inputs,
            Some(2),
        );
        res.unwrap();
        let env = env_file(r.out.path());
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("FOLDWISE_OUT"), Some(r.out.path().to_str().unwrap()));
        assert_eq!(get("FOLDWISE_INPUT_TRAIN_DATA"), Some("/cache/a"));
        assert_eq!(
            get("FOLDWISE_INPUT_TRAIN_DATA_PART"),
            Some("/cache/a/folds/fold-2.json")
        );
        assert_eq!(get("FOLDWISE_INPUT_MODELS"), Some("/cache/m0:/cache/m1"));
        assert_eq!(get("FOLDWISE_INPUT_MODELS_PART"), None);
        assert_eq!(
            get("FOLDWISE_PARAMS"),
            Some(r#"{"epochs":3,"flag":true,"list":[1,2],"lr":0.5,"name":"a b"}"#)
        );
        assert_eq!(get("FOLDWISE_PARAM_LR"), Some("0.5"));
        assert_eq!(get("FOLDWISE_PARAM_EPOCHS"), Some("3"));
        assert_eq!(get("FOLDWISE_PARAM_NAME"), Some("a b"));
        assert_eq!(get("FOLDWISE_PARAM_FLAG"), Some("true"));
        assert_eq!(get("FOLDWISE_PARAM_LIST"), None);
        assert_eq!(get("FOLDWISE_SEED"), Some("77"));
        assert_eq!(get("FOLDWISE_INSTANCE"), Some("cmd[2]"));
        assert_eq!(get("FOLDWISE_FOLD"), Some("2"));
        assert_eq!(get("FOLDWISE_THREADS"), Some("3"));
        assert_eq!(get("MY_VAR"), Some("hello"));
        assert!(env.contains_key("PATH"));
        // Runs in the pipeline folder; logs stay out of the artifact.
        let pwd = fs::read_to_string(r.out.path().join("pwd.txt")).unwrap();
        assert_eq!(
            Path::new(pwd.trim()).canonicalize().unwrap(),
            r.base.path().canonicalize().unwrap()
        );
        let mut files: Vec<_> = fs::read_dir(r.out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["env.txt", "pwd.txt"]);
    }

    #[test]
    fn no_fold_no_fold_variable() {
        let (r, res) =
            run_plain(json!({"argv": ["sh", "-c", "env -0 > \"$FOLDWISE_OUT/env.txt\""]}));
        res.unwrap();
        let env = env_file(r.out.path());
        assert!(!env.contains_key("FOLDWISE_FOLD"));
        assert_eq!(env.get("FOLDWISE_PARAMS").map(String::as_str), Some("{}"));
    }

    #[test]
    fn argv_runs_a_script_relative_to_the_pipeline_folder() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let script = base.path().join("tools/make.sh");
        fs::create_dir(base.path().join("tools")).unwrap();
        fs::write(
            &script,
            "#!/bin/sh\nprintf '%s|' \"$@\" > \"$FOLDWISE_OUT/args.txt\"\n",
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let (r, res) = run_cmd(
            base,
            json!({"argv": ["./tools/make.sh", "a b", "$HOME", "*"], "deps": ["tools/make.sh"]}),
            BTreeMap::new(),
            None,
        );
        res.unwrap();
        // No shell: arguments arrive verbatim.
        assert_eq!(
            fs::read_to_string(r.out.path().join("args.txt")).unwrap(),
            "a b|$HOME|*|"
        );
    }

    #[test]
    fn failure_reports_status_and_stderr_tail() {
        let (r, res) = run_plain(
            json!({"shell": "echo out; for i in $(seq 1 30); do echo err$i >&2; done; exit 3"}),
        );
        let mut want = String::from(
            "command `sh -c \"echo out; for i in $(seq 1 30); do echo err$i >&2; done; exi…\"` exited with status 3; last lines of its stderr:",
        );
        for i in 11..=30 {
            want.push_str(&format!("\n  err{i}"));
        }
        assert_eq!(res.unwrap_err().to_string(), want);
        assert_eq!(fs::read_dir(r.out.path()).unwrap().count(), 0);

        assert_eq!(
            failure_text(json!({"argv": ["sh", "-c", "exit 7"]})),
            "command `sh` exited with status 7 (nothing on stderr)"
        );
    }

    #[test]
    fn killed_by_signal() {
        assert_eq!(
            failure_text(json!({"argv": ["sh", "-c", "kill -9 $$"]})),
            "command `sh` was killed by signal 9 (nothing on stderr)"
        );
    }

    #[test]
    fn program_not_found() {
        assert_eq!(
            failure_text(json!({"argv": ["foldwise-no-such-program-xyz", "--x"]})),
            "cannot start `foldwise-no-such-program-xyz`: program not found on PATH"
        );
        assert_eq!(
            failure_text(json!({"argv": ["./missing.sh"]})),
            "cannot start `./missing.sh`: program not found"
        );
    }

    #[test]
    fn long_output_is_drained() {
        // More than a pipe buffer on both streams, and one huge line.
        let e = failure_text(
            json!({"shell": "seq 1 200000; seq 1 200000 >&2; head -c 100000 /dev/zero | tr '\\0' x >&2; echo >&2; exit 1"}),
        );
        let lines: Vec<_> = e.lines().collect();
        assert_eq!(lines.len(), 1 + STDERR_TAIL, "{}", shorten(&e, 300));
        assert_eq!(lines[STDERR_TAIL - 1], "  200000");
        assert!(lines[STDERR_TAIL].len() < MAX_LINE + 10);
        assert!(lines[STDERR_TAIL].ends_with('…'));
    }

    #[test]
    fn missing_dep_and_missing_input() {
        let e = failure_text(json!({"argv": ["true"], "deps": ["gone.py"]}));
        assert!(e.ends_with("gone.py: `deps[0]` does not exist"), "{e}");
        assert_eq!(
            failure_text(json!({"argv": ["true"], "inputs": {"x": "up"}})),
            "missing input `inputs.x`"
        );
    }

    #[test]
    fn check_reports_issues_on_the_right_path() {
        let paths = |p: Value| -> Vec<(String, String)> {
            check(&full(p))
                .into_iter()
                .map(|i| (i.path, i.message))
                .collect()
        };
        assert_eq!(
            paths(json!({})),
            [(
                "argv".into(),
                "one of `argv` and `shell` is required".into()
            )]
        );
        assert_eq!(
            paths(json!({"argv": ["a"], "shell": "b"})),
            [(
                "shell".into(),
                "give either `argv` or `shell`, not both".into()
            )]
        );
        assert_eq!(
            paths(json!({"argv": []})),
            [(
                "argv".into(),
                "`argv` is empty: it must name a program".into()
            )]
        );
        assert!(paths(json!({"argv": ["x"]})).is_empty());
        assert!(paths(json!({"shell": "x"})).is_empty());
        assert_eq!(
            paths(json!({"shell": "x", "params": {"a-b": 1, "a_b": 2}})),
            [(
                "params.a_b".into(),
                "`a-b` and `a_b` both become `FOLDWISE_PARAM_A_B`".into()
            )]
        );
        assert_eq!(
            paths(json!({"shell": "x", "inputs": {"a": "x", "a_part": "y"}})),
            [(
                "inputs.a_part".into(),
                "`a` and `a_part` both become `FOLDWISE_INPUT_A_PART`".into()
            )]
        );
        assert_eq!(
            paths(json!({"shell": "x", "env": {"FOLDWISE_OUT": "/tmp", "A=B": "c"}})),
            [
                (
                    "env.A=B".into(),
                    "`A=B` is not a valid environment-variable name".into()
                ),
                (
                    "env.FOLDWISE_OUT".into(),
                    "names starting with `FOLDWISE_` are set by foldwise".into()
                ),
            ]
        );
    }

    #[test]
    fn external_inputs_name_each_dep() {
        let got = Command.external_inputs(
            &full(json!({"shell": "x", "deps": ["a.py", "/abs/data"]})),
            Path::new("/p"),
        );
        assert_eq!(
            got,
            vec![
                ("deps[0]".to_string(), PathBuf::from("/p/a.py")),
                ("deps[1]".to_string(), PathBuf::from("/abs/data")),
            ]
        );
    }

    #[test]
    fn env_suffix_rules() {
        assert_eq!(env_suffix("train-data.v2"), "TRAIN_DATA_V2");
        assert_eq!(env_suffix("x[*]"), "X___");
    }
}
