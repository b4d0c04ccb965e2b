//! The command-line front end: argument parsing, output formatting and exit
//! codes. `main.rs` only calls [`main`].
//!
//! Exit codes: 0 success; 1 a node failed (or was skipped); 2 the pipeline
//! file or the command line is wrong, or the cache is unusable.

mod diff;
mod log;
mod printer;
pub mod reference;
mod watch;

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{self, Pipeline};
use crate::exec::{Engine, RunOptions};
use crate::graph;
use crate::nodes::KINDS;
use crate::store::Store;

use printer::Printer;

#[derive(Parser, Debug)]
#[command(
    name = "foldwise",
    version,
    about = "Declarative, cached, comparable ensembling pipelines for multi-digit recognition"
)]
struct Cli {
    /// Cache directory [env: FOLDWISE_CACHE; default: ./cache]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Never use colour.
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the targets (default: every node) and their stale ancestors.
    Run {
        pipeline: PathBuf,
        /// Nodes (`cnn`) or instances (`cnn[0]`) to bring up to date.
        targets: Vec<String>,
        /// Recompute these nodes even when fresh (repeatable).
        #[arg(long, value_name = "NODE")]
        force: Vec<String>,
        /// Show the plan, with reasons, without running anything.
        #[arg(long)]
        dry_run: bool,
        /// Nodes executing at once.
        #[arg(long, short = 'j', default_value_t = 1)]
        jobs: usize,
        /// Print nothing but failures.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Print the run report as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Then rerun what becomes stale whenever the pipeline file or an
        /// input it names changes, until Ctrl-C.
        #[arg(long, conflicts_with_all = ["dry_run", "json"])]
        watch: bool,
    },
    /// Is every node fresh? Says why each stale node is stale.
    Status {
        pipeline: PathBuf,
        targets: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Validate a pipeline file and report every problem.
    Check { pipeline: PathBuf },
    /// Print the node graph.
    Dag {
        pipeline: PathBuf,
        #[arg(long, default_value = "text", value_parser = ["text", "dot", "mermaid"])]
        format: String,
    },
    /// Print where a node's artifact lives (it must be fresh).
    Path { pipeline: PathBuf, node: String },
    /// Print the reference of every node kind and its parameters (Markdown).
    Kinds,
    /// Print the JSON Schema of the pipeline format, for editors (Taplo).
    Schema,
    /// Compare two variants: shared, changed (and how), only in A or B,
    /// the compute B reuses, scores side by side. A side may be `REV:path`.
    Diff {
        a: String,
        b: String,
        #[arg(long)]
        json: bool,
    },
    /// List recorded runs (of one pipeline), or one score across runs.
    Log {
        pipeline: Option<String>,
        /// Tabulate this score (`seq_acc`, `char_acc`, `len_acc`) across runs.
        #[arg(long, value_name = "NAME")]
        metric: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write a self-contained HTML report of a pipeline from the cache.
    Report {
        pipeline: PathBuf,
        #[arg(long, short = 'o', default_value = "report.html")]
        output: PathBuf,
    },
    /// Remove cache entries that no given pipeline's current keys reach.
    Gc {
        pipelines: Vec<PathBuf>,
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let color =
        !cli.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    match dispatch(&cli, color) {
        Ok(code) => code,
        Err(Failure::Reported(code)) => code,
        Err(Failure::Message(m)) => {
            eprintln!("error: {m}");
            2
        }
    }
}

enum Failure {
    /// Already printed.
    Reported(i32),
    Message(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Message(e.to_string())
    }
}

/// Colour for output on stdout.
fn color_stdout(cli: &Cli) -> bool {
    !cli.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

fn cache_dir(cli: &Cli) -> PathBuf {
    cli.cache_dir
        .clone()
        .or_else(|| std::env::var_os("FOLDWISE_CACHE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("cache"))
}

fn load(path: &Path, color: bool) -> Result<Pipeline, Failure> {
    config::load(path, KINDS).map_err(|e| {
        eprint!("{}", config::render_diagnostic(&e, color, 100));
        Failure::Reported(2)
    })
}

fn open_store(cli: &Cli) -> Result<Store, Failure> {
    let dir = cache_dir(cli);
    Store::open(&dir).map_err(|e| Failure::Message(format!("cannot open the cache: {e}")))
}

fn dispatch(cli: &Cli, color: bool) -> Result<i32, Failure> {
    match &cli.cmd {
        Cmd::Check { pipeline } => {
            let p = load(pipeline, color)?;
            let fans = p.nodes.iter().filter(|n| n.fan.is_some()).count();
            println!(
                "{}: ok ({} nodes, {} instances, {} expanded per fold)",
                pipeline.display(),
                p.nodes.len(),
                p.instances.len(),
                fans
            );
            Ok(0)
        }
        Cmd::Dag { pipeline, format } => {
            let p = load(pipeline, color)?;
            let f: graph::Format = format.parse()?;
            let out = graph::render(&p, f);
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            Ok(0)
        }
        Cmd::Status {
            pipeline,
            targets,
            json,
        } => {
            let p = load(pipeline, color)?;
            let store = open_store(cli)?;
            let engine = Engine::new(&p, &store);
            let needed = engine.needed(targets)?;
            let st = engine.status(&needed);
            store.save_memo()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", printer::status_table(&st, color));
            }
            Ok(0)
        }
        Cmd::Run {
            pipeline,
            targets,
            force,
            dry_run,
            jobs,
            quiet,
            json,
            watch,
        } => {
            if *watch {
                let args = watch::WatchArgs {
                    pipeline,
                    targets,
                    force,
                    jobs: *jobs,
                    quiet: *quiet,
                };
                return watch::watch(cli, &args, color);
            }
            let p = load(pipeline, color)?;
            let store = open_store(cli)?;
            let engine = Engine::new(&p, &store);
            if *dry_run {
                let needed = engine.needed(targets)?;
                let mut forced = BTreeSet::new();
                for f in force {
                    forced.extend(engine.resolve(f)?);
                }
                let st = engine.status(&needed);
                store.save_memo()?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&st)?);
                } else {
                    print!("{}", printer::plan(&p, &st, &forced, color));
                }
                return Ok(0);
            }
            let opts = RunOptions {
                targets: targets.clone(),
                force: force.clone(),
                jobs: *jobs,
                ..RunOptions::default()
            };
            let printer = Printer::new(color, *quiet || *json);
            let report = engine.run(&opts, &printer)?;
            printer.finish();
            if let Err(e) = log::record(&store, pipeline, &p, &report) {
                eprintln!("warning: the run was not recorded in the history: {e}");
            }
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                eprint!("{}", printer::summary(&report, *quiet, color));
                if !*quiet {
                    use std::io::Write as _;
                    let _ = std::io::stderr().flush();
                    print!("{}", printer::closing_tables(&report, &store));
                }
            }
            Ok(if report.ok() { 0 } else { 1 })
        }
        Cmd::Path { pipeline, node } => {
            let p = load(pipeline, color)?;
            let store = open_store(cli)?;
            let engine = Engine::new(&p, &store);
            let hits = engine.resolve(node)?;
            let needed = engine.needed(std::slice::from_ref(node))?;
            let st = engine.status(&needed);
            store.save_memo()?;
            let mut code = 0;
            for i in hits {
                let name = &p.instances[i].name;
                let s = st.iter().find(|s| &s.instance == name).expect("needed");
                match (&s.artifact, &s.stale) {
                    (Some(a), _) => println!("{}", a.dir.display()),
                    (None, Some(r)) => {
                        eprintln!("error: `{name}` has no artifact yet: {r}");
                        code = 1;
                    }
                    (None, None) => unreachable!("fresh nodes have artifacts"),
                }
            }
            Ok(code)
        }
        Cmd::Diff { a, b, json } => {
            let pa = diff::load_side(a, color)?;
            let pb = diff::load_side(b, color)?;
            let store = open_store(cli)?;
            let d = crate::report::diff::diff(&pa, a, &pb, b, &store);
            store.save_memo()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                let color = color_stdout(cli);
                print!("{}", diff::render(&d, color));
            }
            Ok(0)
        }
        Cmd::Log {
            pipeline,
            metric,
            json,
        } => {
            let store = open_store(cli)?;
            let name = pipeline
                .as_deref()
                .filter(|f| Path::new(f).is_file())
                .and_then(|f| config::load(Path::new(f), KINDS).ok())
                .map(|p| p.name);
            let runs = log::select(&store, pipeline.as_deref().map(|a| (a, name.as_deref())));
            match (metric, json) {
                (Some(m), true) => println!(
                    "{}",
                    serde_json::to_string_pretty(&log::metric_table(&runs, m))?
                ),
                (Some(m), false) => print!("{}", log::render_metric(&log::metric_table(&runs, m))),
                (None, true) => println!("{}", serde_json::to_string_pretty(&runs)?),
                (None, false) if runs.is_empty() => println!("no recorded runs"),
                (None, false) => print!("{}", log::list(&runs)),
            }
            Ok(0)
        }
        Cmd::Report { pipeline, output } => {
            let p = load(pipeline, color)?;
            let store = open_store(cli)?;
            let html = crate::report::render(&p, &store);
            store.save_memo()?;
            std::fs::write(output, &html)
                .map_err(|e| Failure::Message(format!("cannot write {}: {e}", output.display())))?;
            println!(
                "wrote {} ({})",
                output.display(),
                printer::bytes(html.len() as u64)
            );
            Ok(0)
        }
        Cmd::Kinds => {
            print!("{}", reference::kinds_markdown());
            Ok(0)
        }
        Cmd::Schema => {
            print!("{}", reference::schema_json());
            Ok(0)
        }
        Cmd::Gc { pipelines, dry_run } => {
            let store = open_store(cli)?;
            let mut live = BTreeSet::new();
            let mut live_work = BTreeSet::new();
            for path in pipelines {
                let p = load(path, color)?;
                let engine = Engine::new(&p, &store);
                for s in engine.status(&vec![true; p.instances.len()]) {
                    live.extend(s.key);
                    live_work.extend(s.work_key);
                }
            }
            let r = store.gc(&live, &live_work, *dry_run)?;
            store.save_memo()?;
            println!(
                "{} {} object(s) and {} temporary folder(s), {} ({} kept)",
                if *dry_run { "would remove" } else { "removed" },
                r.objects,
                r.temporaries,
                printer::bytes(r.bytes),
                r.kept
            );
            if r.work + r.derived > 0 {
                println!(
                    "{} {} working folder(s) and {} derived file(s)",
                    if *dry_run {
                        "would also remove"
                    } else {
                        "also removed"
                    },
                    r.work,
                    r.derived
                );
            }
            Ok(0)
        }
    }
}
