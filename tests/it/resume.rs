//! Working folders of resumable kinds: kept across runs and kills, keyed by
//! the key minus the parameters a kind declares, reachable by `gc`.

use std::path::Path;

use foldwise::config::{self, Pipeline};
use foldwise::exec::{Engine, NullObserver, RunOptions};
use foldwise::kind::schema::{int_min, Dflt, Param, Ty};
use foldwise::kind::{Kind, NodeError, RunCtx};
use foldwise::store::Store;

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
