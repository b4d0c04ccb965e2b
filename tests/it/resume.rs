//! Working folders of resumable kinds: kept across runs and kills, keyed by
//! the key minus the parameters a kind declares, reachable by `gc`.

use std::path::Path;

use foldwise::config::{self, Pipeline};
use foldwise::exec::{Engine, NullObserver, RunOptions};
use foldwise::kind::schema::{int_min, Dflt, Param, Ty};
use foldwise::kind::{Kind, NodeError, RunCtx};
use foldwise::store::Store;

use crate::common::{names, spawn_run, tiny_training, Project};

/// Computes steps 0..upto, one file each, keeping every finished step in
/// its working folder; records how many it computed this time.
struct Steps;

static PARAMS: &[Param] = &[
    Param {
        name: "upto",
        ty: int_min(1),
        default: Dflt::Required,
        doc: "",
    },
    Param {
        name: "salt",
        ty: Ty::Str,
        default: Dflt::Value("\"\""),
        doc: "",
    },
];

impl Kind for Steps {
    fn name(&self) -> &'static str {
        "steps"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        ""
    }
    fn params(&self) -> &'static [Param] {
        PARAMS
    }
    fn resumable(&self) -> Option<&'static [&'static str]> {
        Some(&["upto"])
    }
    fn run(&self, ctx: &RunCtx<'_>) -> Result<(), NodeError> {
        let work = ctx.work.expect("a resumable kind gets a working folder");
        let upto = ctx.params["upto"].as_u64().unwrap();
        let mut computed = 0;
        let mut all = String::new();
        for i in 0..upto {
            let step = work.join(format!("step-{i}"));
            if !step.exists() {
                std::fs::write(&step, format!("{i}\n")).unwrap();
                computed += 1;
            }
            all.push_str(&std::fs::read_to_string(&step).unwrap());
        }
        std::fs::write(work.join("computed"), computed.to_string()).unwrap();
        std::fs::write(ctx.out.join("all.txt"), all).unwrap();
        Ok(())
    }
}

static KINDS: &[&dyn Kind] = &[&Steps];

fn load(dir: &Path, upto: u64, salt: &str) -> Pipeline {
    let src = format!(
        "[pipeline]\nname = \"r\"\n\n[nodes.s]\nkind = \"steps\"\nupto = {upto}\nsalt = \"{salt}\"\n"
    );
    config::load_str("r.toml", &src, dir, KINDS).unwrap()
}

fn computed(store: &Store, p: &Pipeline) -> String {
    let e = Engine::new(p, store);
    let work = e.status(&[true])[0].work_key.clone().unwrap();
    std::fs::read_to_string(store.root().join("work").join(work).join("computed")).unwrap()
}

#[test]
fn more_steps_continue_from_the_working_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("cache")).unwrap();
    let run = |p: &Pipeline| {
        Engine::new(p, &store)
            .run(&RunOptions::default(), &NullObserver)
            .unwrap()
    };

    let two = load(dir.path(), 2, "");
    assert_eq!(run(&two).executed(), ["s"]);
    assert_eq!(computed(&store, &two), "2");

    // Another key (upto = 3), the same work key: only step 2 is computed.
    let three = load(dir.path(), 3, "");
    assert_eq!(run(&three).executed(), ["s"]);
    assert_eq!(computed(&store, &three), "1");
    let st = Engine::new(&three, &store).status(&[true]);
    let all =
        std::fs::read_to_string(st[0].artifact.as_ref().unwrap().dir.join("all.txt")).unwrap();
    assert_eq!(all, "0\n1\n2\n");

    // A parameter inside the work key: a fresh folder, all steps again.
    let salted = load(dir.path(), 3, "x");
    run(&salted);
    assert_eq!(computed(&store, &salted), "3");

    // gc keeps the working folder of what the pipeline reaches now, and
    // removes the other one.
    let live: std::collections::BTreeSet<String> = Engine::new(&salted, &store)
        .status(&[true])
        .into_iter()
        .filter_map(|s| s.key)
        .collect();
    let live_work = Engine::new(&salted, &store)
        .status(&[true])
        .into_iter()
        .filter_map(|s| s.work_key)
        .collect();
    let r = store.gc(&live, &live_work, false).unwrap();
    assert_eq!((r.objects, r.work), (2, 1));
    assert_eq!(computed(&store, &salted), "3");
}

/// The model bytes and artifact digest of the trained instance.
fn trained(p: &Project) -> (Vec<u8>, String, Option<String>) {
    let s = p.status().pop().unwrap();
    let a = s.artifact.expect("cnn has an artifact");
    let model = std::fs::read(a.dir.join("model.safetensors")).unwrap();
    (model, a.digest, s.work_key)
}

/// The first `epoch-<e>.json` checkpoint found under the cache's `work/`.
pub(crate) fn checkpoint_epoch(cache: &Path) -> Option<usize> {
    let dirs = std::fs::read_dir(cache.join("work")).ok()?;
    dirs.flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter_map(|f| {
            let name = f.file_name().into_string().ok()?;
            name.strip_prefix("epoch-")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .max()
}

/// A real SIGKILL during training, after the first checkpoint: the rerun
/// resumes from the checkpoint and its model is bit-identical to an
/// uninterrupted run's.
#[test]
fn a_training_killed_after_a_checkpoint_resumes_to_the_same_model() {
    let p = Project::new(&tiny_training("kill-train", 8));
    let mut child = spawn_run(&p, &[]);
    let t = std::time::Instant::now();
    while checkpoint_epoch(&p.cache()).is_none() {
        assert!(t.elapsed().as_secs() < 120, "no checkpoint within 120 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = checkpoint_epoch(&p.cache()).unwrap();
    assert!(at_kill < 8, "the kill came after the last epoch");
    assert!(p.status().pop().unwrap().artifact.is_none());

    assert_eq!(p.run().executed(), names(&["cnn"]));
    let (model, digest, work) = trained(&p);
    let work = p.cache().join("work").join(work.unwrap());
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("timings.json")).unwrap()).unwrap();
    assert_eq!(timings["resumed_from_epoch"], at_kill, "{timings}");
    assert_eq!(timings["trained_epochs"], 8 - at_kill, "{timings}");

    let q = Project::new(&tiny_training("kill-train", 8));
    q.run();
    let (model_q, digest_q, _) = trained(&q);
    assert!(
        model == model_q,
        "model.safetensors differs after the resume"
    );
    assert_eq!(digest, digest_q);
}
