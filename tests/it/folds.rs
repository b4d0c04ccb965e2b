//! Per-fold expansion with the real data nodes, on the example pipelines
//! (which double as fixtures).

use foldwise::exec::RunOptions;

use crate::common::{names, stdout, Project};

fn example(name: &str) -> String {
    std::fs::read_to_string(format!("{}/pipelines/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn the_command_example_runs_once_per_fold_then_gathers() {
    let p = Project::new(&example("command.toml"));
    let r = p.run();
    assert_eq!(
        r.executed(),
        names(&[
            "plates",
            "folds",
            "fold_sizes[0]",
            "fold_sizes[1]",
            "fold_sizes[2]",
            "fold_sizes[3]",
            "table"
        ])
    );
    let table = p
        .status()
        .pop()
        .unwrap()
        .artifact
        .unwrap()
        .dir
        .join("table.txt");
    assert_eq!(
        std::fs::read_to_string(table).unwrap(),
        "held-out images per fold\nfold 0: 50 held out\nfold 1: 50 held out\n\
         fold 2: 50 held out\nfold 3: 50 held out\n"
    );
    assert!(p.run().executed().is_empty());

    // Fewer folds: the split and everything after it rerun; the plates do not.
    p.edit("k = 4", "k = 2");
    let r = p.run();
    assert_eq!(
        r.executed(),
        names(&["folds", "fold_sizes[0]", "fold_sizes[1]", "table"])
    );
    assert_eq!(r.reused(), names(&["plates"]));
}

#[test]
fn a_fold_instance_is_keyed_by_its_own_part_file() {
    let p = Project::new(&example("command.toml"));
    p.run();
    let st = p.status();
    let folds = st.iter().find(|s| s.instance == "folds").unwrap();
    let folds_dir = folds.artifact.as_ref().unwrap().dir.clone();
    for i in 0..4 {
        let inst = st
            .iter()
            .find(|s| s.instance == format!("fold_sizes[{i}]"))
            .unwrap();
        let key = inst.key.as_ref().unwrap();
        let pre: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                p.cache()
                    .join("objects")
                    .join(&key[..2])
                    .join(key)
                    .join("preimage.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let part = std::fs::read(folds_dir.join(format!("folds/fold-{i}.json"))).unwrap();
        assert_eq!(
            pre["hashed"]["inputs"][0]["digest"],
            blake3::hash(&part).to_hex().to_string(),
            "fold_sizes[{i}] hashes fold {i}'s index list"
        );
        assert_eq!(pre["hashed"]["fold"], i);
    }
}

#[test]
fn renamed_nodes_in_another_pipeline_share_artifacts() {
    let a = Project::new(&example("command.toml"));
    a.run();
    // Same work under other names, in a pipeline of another name, on the
    // same cache.
    let renamed = example("command.toml")
        .replace("name = \"command-example\"", "name = \"variant\"")
        .replace("plates", "digits")
        .replace("fold_sizes", "sizes_per_fold");
    std::fs::write(a.path().join("v.toml"), renamed).unwrap();
    let p = foldwise::config::load(&a.path().join("v.toml")).unwrap();
    let store = foldwise::store::Store::open(&a.cache()).unwrap();
    let r = foldwise::exec::Engine::new(&p, &store)
        .run(&RunOptions::default(), &foldwise::exec::NullObserver)
        .unwrap();
    assert!(r.executed().is_empty(), "{:?}", r.executed());
}

#[test]
fn a_holdout_consumer_runs_once_and_dag_shows_the_expansion() {
    let p = Project::new(&example("quickstart.toml"));
    p.write(&format!(
        "{}\n[nodes.peek]\nkind = \"command\"\ninputs = {{ h = \"holdout\", f = \"folds[1]\" }}\n\
         shell = \"cp $FOLDWISE_INPUT_F_PART $FOLDWISE_OUT/\"\n",
        example("quickstart.toml")
            .replace("count = 3000", "count = 60")
            .replace("count = 1000", "count = 10")
    ));
    let out = p.cli(&["dag", "p.toml"]);
    assert_eq!(
        stdout(&out),
        "plates (synthetic)\nplates_test (synthetic)\nfolds (split) <- data: plates\n\
         holdout (split) <- data: plates\npeek (command) <- inputs.f: pick folds#1, inputs.h: holdout\n"
    );
    let r = p.run();
    assert!(r.executed().contains(&"peek".to_string()));
}
