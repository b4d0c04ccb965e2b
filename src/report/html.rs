//! `foldwise report`: one self-contained HTML file about a pipeline — its
//! graph with cached and executed nodes marked, per-fold learning curves,
//! the ensemble ladder, per-position accuracy, confusion matrices,
//! thumbnails of misread images, and node timings.
//!
//! Self-contained: charts are inline SVG, thumbnails are PNG data URIs,
//! styles and the one script are inline; nothing is fetched to view it.
//! The script only records whether any script error fired and whether
//! every image decoded (`<html data-render="ok">`), for headless checks.
//!
//! Everything is read from the cache: nothing runs. Sections whose
//! artifacts are missing say so.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::artifact::dataset::{DataIndex, IMAGES_DIR};
use crate::artifact::model::{self, EpochMetrics};
use crate::artifact::scores::{read_evaluation, read_ladder, read_postprocess, Ladder, StepReport};
use crate::config::Pipeline;
use crate::kind::{NodeError, ReportRole};
use crate::predictions::decode;
use crate::predictions::postprocess::Setting;
use crate::store::{RunRecord, Store};

use super::dag::{self, Mark};
use super::plots::{self, Series};
use super::project::{project, Projected};
use super::thumbs;

/// How many misread images the report shows per evaluation.
pub const MISREADS: usize = 24;

/// The report of `p` over `store`, as one HTML document.
pub fn render(p: &Pipeline, store: &Store) -> String {
    let proj = project(p, store);
    // The last run of this file, else of a file with this pipeline name.
    let runs = store.history();
    let path = p.path.display().to_string();
    let last = runs
        .iter()
        .rev()
        .find(|r| r.pipeline == p.name && r.path == path)
        .or_else(|| runs.iter().rev().find(|r| r.pipeline == p.name))
        .cloned();
    let marks = marks(&proj, last.as_ref());
    let seconds: Vec<Option<f64>> = proj
        .iter()
        .map(|x| {
            x.artifact.as_ref()?;
            store.meta(&x.key)?.get("seconds")?.as_f64()
        })
        .collect();

    let mut body = String::new();
    header(&mut body, p, &marks, last.as_ref());
    section(&mut body, "graph", "Pipeline graph");
    body.push_str("<p class=\"legend\"><span class=\"sw executed\"></span>executed by the last run <span class=\"sw cached\"></span>cached <span class=\"sw not-run\"></span>not run</p>");
    let _ = write!(
        body,
        "<div class=\"scroll\">{}</div>",
        dag::svg(p, &marks, &seconds)
    );
    scores(&mut body, &proj);
    curves(&mut body, &proj);
    ladders(&mut body, &proj);
    postprocessing(&mut body, &proj);
    fitted(&mut body, p, &proj);
    experiments(&mut body, p, store, &proj);
    evaluations(&mut body, p, &proj);
    timing(&mut body, &proj, &seconds);
    page(&format!("foldwise report: {}", p.name), &body)
}

fn marks(proj: &[Projected], last: Option<&RunRecord>) -> Vec<Mark> {
    let executed: BTreeSet<(&str, &str)> = last
        .into_iter()
        .flat_map(|r| r.with_outcome("executed"))
        .filter_map(|n| Some((n.instance.as_str(), n.key.as_deref()?)))
        .collect();
    proj.iter()
        .map(|x| match &x.artifact {
            None => Mark::NotRun,
            Some(_) if executed.contains(&(x.instance.as_str(), x.key.as_str())) => Mark::Executed,
            Some(_) => Mark::Cached,
        })
        .collect()
}

fn header(s: &mut String, p: &Pipeline, marks: &[Mark], last: Option<&RunRecord>) {
    let count = |m: Mark| marks.iter().filter(|x| **x == m).count();
    let _ = write!(
        s,
        "<header><h1>{}</h1><p><code>{}</code> · {} instances: {} executed by the last run, {} cached, {} not run</p>",
        esc(&p.name),
        esc(&p.path.display().to_string()),
        marks.len(),
        count(Mark::Executed),
        count(Mark::Cached),
        count(Mark::NotRun),
    );
    match last {
        Some(r) => {
            let _ = write!(
                s,
                "<p>last run {} UTC, {} executed and {} reused in {}</p>",
                utc(r.started_unix_ms / 1000),
                r.with_outcome("executed").count(),
                r.with_outcome("reused").count(),
                secs(r.seconds)
            );
        }
        None => s.push_str("<p>no run of this pipeline is recorded in this cache</p>"),
    }
    s.push_str("</header>");
}

fn section(s: &mut String, id: &str, title: &str) {
    let _ = write!(s, "<h2 id=\"{id}\">{}</h2>", esc(title));
}

/// The instances whose kind plays `role` in the report.
fn of_role(proj: &[Projected], role: ReportRole) -> Vec<&Projected> {
    proj.iter()
        .filter(|x| x.kind_ref.report_role() == role)
        .collect()
}

/// Reads the artifact of `x` with `read`, when it has run and reads.
fn typed<T>(x: &Projected, read: impl Fn(&Path) -> Result<T, NodeError>) -> Option<T> {
    x.artifact.as_ref().and_then(|a| read(&a.dir).ok())
}

/// The heading of an instance's subsection.
fn heading(s: &mut String, x: &Projected) {
    let _ = write!(s, "<h3>{}</h3>", esc(&x.instance));
}

/// Says an instance's artifact is missing or unreadable.
fn not_run(s: &mut String) {
    s.push_str("<p class=\"muted\">not run</p>");
}

fn scores(s: &mut String, proj: &[Projected]) {
    let evals = of_role(proj, ReportRole::Evaluation);
    if evals.is_empty() {
        return;
    }
    section(s, "scores", "Scores");
    s.push_str("<table><tr><th>evaluation</th><th>images</th><th>sequence</th><th>character</th><th>length</th></tr>");
    for x in evals {
        match typed(x, read_evaluation) {
            Some(m) => {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(&x.instance),
                    m.n,
                    pct(m.seq_acc),
                    pct(m.char_acc),
                    pct(m.len_acc)
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td colspan=\"4\" class=\"muted\">not run</td></tr>",
                    esc(&x.instance)
                );
            }
        }
    }
    s.push_str("</table>");
}

fn curves(s: &mut String, proj: &[Projected]) {
    let trains = of_role(proj, ReportRole::Training);
    if trains.is_empty() {
        return;
    }
    section(s, "curves", "Learning curves");
    for x in trains {
        let _ = write!(s, "<h3>{}</h3>", esc(&x.instance));
        let Some(a) = &x.artifact else {
            s.push_str("<p class=\"muted\">not run</p>");
            continue;
        };
        if let Ok(summary) = model::read_summary(&a.dir) {
            let _ = write!(
                s,
                "<p class=\"muted\">{} parameters, {} epochs, trained on {}</p>",
                summary.parameters,
                summary.epochs,
                esc(summary.device.as_deref().unwrap_or("cpu"))
            );
        }
        // Unreadable files draw empty charts.
        let rows = model::read_metrics(&a.dir).unwrap_or_default();
        let col = |value: fn(&EpochMetrics) -> f64| -> Vec<(f64, f64)> {
            rows.iter().map(|r| (r.epoch as f64, value(r))).collect()
        };
        let series = |name, color, points| Series {
            name,
            color,
            points,
        };
        let snaps = model::read_snapshots(&a.dir).unwrap_or_default();
        let lr = col(|r| r.lr);
        let marks: Vec<(f64, f64)> = snaps
            .iter()
            .filter_map(|sn| lr.iter().find(|p| p.0 == sn.epoch as f64).copied())
            .collect();
        s.push_str("<div class=\"row\">");
        s.push_str(&plots::lines(
            "loss",
            "loss",
            &[
                series("train", plots::BLUE_, col(|r| r.train_loss)),
                series("validation", plots::ORANGE, col(|r| r.valid_loss)),
            ],
            &[],
            None,
        ));
        s.push_str(&plots::lines(
            "accuracy",
            "accuracy",
            &[
                series("valid seq", plots::GREEN_, col(|r| r.valid_seq_acc)),
                series("valid char", plots::PURPLE, col(|r| r.valid_char_acc)),
                series("train seq", plots::GREY, col(|r| r.train_seq_acc)),
            ],
            &[],
            Some((0.0, 1.0)),
        ));
        s.push_str(&plots::lines(
            "learning rate",
            "lr",
            &[series("lr (last batch)", plots::BLUE_, lr.clone())],
            &marks,
            None,
        ));
        s.push_str("</div>");
    }
}

/// The words of a ladder step.
fn step_label(step: &str) -> String {
    match step {
        "single" => "best single model".into(),
        "snapshots" => "+ snapshots".into(),
        "tta" => "+ TTA".into(),
        "folds" => "+ folds".into(),
        other => format!("+ {}", other.replace(['_', '-'], " ")),
    }
}

/// The ladder section of one `ladder` artifact's scores.
pub fn ladder_html(name: &str, l: &Ladder) -> String {
    let mut s = String::new();
    let _ = write!(s, "<h3>{}</h3><div class=\"row\"><table><tr><th>step</th><th>members</th><th>sequence</th><th>character</th></tr>", esc(name));
    let mut labels = Vec::new();
    let mut values = Vec::new();
    for r in &l.rows {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&step_label(&r.step)),
            r.members,
            pct(r.seq_acc),
            pct(r.char_acc)
        );
        labels.push(r.step.clone());
        values.push(r.seq_acc);
    }
    s.push_str("</table>");
    s.push_str(&plots::bars(
        "sequence accuracy by step",
        &labels,
        &values,
        true,
        plots::GREEN_,
    ));
    s.push_str("</div>");
    s
}

fn ladders(s: &mut String, proj: &[Projected]) {
    let ladders = of_role(proj, ReportRole::Ladder);
    if ladders.is_empty() && of_role(proj, ReportRole::Members).is_empty() {
        return;
    }
    section(s, "ladder", "Ensemble ladder");
    if ladders.is_empty() {
        s.push_str("<p class=\"muted\">no <code>ladder</code> node in this pipeline: add one over a <code>predict</code> node to see how accuracy grows from the best single model through snapshots, TTA and folds.</p>");
    }
    for x in ladders {
        match typed(x, read_ladder) {
            Some(l) => s.push_str(&ladder_html(&x.instance, &l)),
            None => {
                heading(s, x);
                not_run(s);
            }
        }
    }
}

/// A post-processing setting in words (`length force threshold 0.9`,
/// `(fitted)` added when fitted on out-of-fold predictions).
fn setting_words(st: &StepReport) -> String {
    let num = |x: f64| serde_json::Value::from(x).to_string();
    let mut words = match st.setting {
        None => return "off (no out-of-fold evidence)".to_string(),
        Some(Setting::Rules) => "rules".to_string(),
        Some(Setting::LengthForce { threshold }) => {
            format!("length force threshold {}", num(threshold))
        }
        Some(Setting::LengthJoint { weight }) => format!("length joint weight {}", num(weight)),
        Some(Setting::PositionPrior { weight }) => {
            format!("position prior weight {}", num(weight))
        }
    };
    if st.chosen_by == "oof" {
        words.push_str(" (fitted)");
    }
    words
}

/// One table per `postprocess` node: each step's setting (and how it was
/// chosen), its out-of-fold effect, and the codes it changed, fixed and
/// broke, from the artifact's `postprocess.json`.
fn postprocessing(s: &mut String, proj: &[Projected]) {
    let nodes = of_role(proj, ReportRole::PostProcessing);
    if nodes.is_empty() {
        return;
    }
    section(s, "post", "Post-processing");
    for x in nodes {
        heading(s, x);
        let Some(r) = typed(x, read_postprocess) else {
            not_run(s);
            continue;
        };
        let opt_pct = |v: Option<f64>| v.map_or("–".to_string(), pct);
        let opt_n = |v: Option<usize>| v.map_or("–".to_string(), |n| n.to_string());
        s.push_str("<table><tr><th>step</th><th>setting</th><th>out of fold</th><th>changed</th><th>fixed</th><th>broke</th><th>accuracy</th></tr>");
        for st in &r.steps {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td></tr>",
                esc(&st.step),
                esc(&setting_words(st)),
                opt_pct(st.oof_before),
                opt_pct(st.oof_after),
                st.changed,
                opt_n(st.fixed),
                opt_n(st.broke),
                opt_pct(st.seq_acc_before),
                opt_pct(st.seq_acc_after),
            );
        }
        s.push_str("</table>");
    }
}

/// One table per fitted ensemble (`select`, `stack`): what it was fitted
/// on, its out-of-fold scores, and per member (named by its `inputs` node)
/// the member's own scores, its weight and, for `select`, how often it
/// was chosen; from the artifact's `fit.json`.
fn fitted(s: &mut String, p: &Pipeline, proj: &[Projected]) {
    let nodes: Vec<(usize, crate::artifact::scores::FitReport)> = (0..proj.len())
        .filter(|&i| proj[i].kind == "ensemble")
        .filter_map(|i| Some((i, typed(&proj[i], crate::artifact::scores::read_fit)?)))
        .collect();
    if nodes.is_empty() {
        return;
    }
    section(s, "fitted", "Fitted ensembles");
    for (i, r) in nodes {
        heading(s, &proj[i]);
        // Member positions are the `inputs` nodes in written order.
        let mut members: Vec<String> = Vec::new();
        for e in p.instances[i].inputs.iter().filter(|e| e.param == "inputs") {
            let name = &p.instances[e.from].name;
            let node = crate::kind::node_of(name).to_string();
            if !members.contains(&node) {
                members.push(node);
            }
        }
        let how = r.how();
        let _ = write!(
            s,
            "<p>{}, fitted on {} out-of-fold images: sequence accuracy {}, log loss {:.4}</p>",
            esc(&how),
            r.oof_items,
            pct(r.oof_seq_acc),
            r.oof_log_loss
        );
        s.push_str("<table><tr><th>member</th><th>out-of-fold accuracy</th><th>out-of-fold log loss</th><th>weight</th>");
        if r.method == "select" {
            s.push_str("<th>chosen</th>");
        }
        s.push_str("</tr>");
        for m in &r.members {
            let name = members
                .get(m.position)
                .cloned()
                .unwrap_or_else(|| format!("inputs[{}]", m.position));
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td>",
                esc(&name),
                pct(m.oof_seq_acc),
                m.oof_log_loss,
                m.weight
            );
            if let Some(c) = m.chosen {
                let _ = write!(s, "<td>{c}</td>");
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
    }
}

/// The experiment table (`foldwise table`): every trained model,
/// prediction and ensemble with its time and scores, in pipeline order.
fn experiments(s: &mut String, p: &Pipeline, store: &Store, proj: &[Projected]) {
    let rows = crate::report::table::rows_of(p, store, proj);
    if rows.is_empty() {
        return;
    }
    section(s, "experiments", "Experiments");
    s.push_str("<table><tr>");
    let columns = crate::report::table::columns(&rows);
    for c in &columns {
        let _ = write!(s, "<th>{}</th>", esc(c));
    }
    s.push_str("</tr>");
    for r in &rows {
        s.push_str("<tr>");
        for cell in r.cells(&columns) {
            let _ = write!(s, "<td>{}</td>", esc(&cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
}

/// The artifact directory of the upstream of instance `i` at `param`.
fn upstream<'a>(p: &Pipeline, proj: &'a [Projected], i: usize, param: &str) -> Option<&'a Path> {
    let e = p.instances[i].inputs.iter().find(|e| e.param == param)?;
    proj[e.from].artifact.as_ref().map(|a| a.dir.as_path())
}

fn evaluations(s: &mut String, p: &Pipeline, proj: &[Projected]) {
    let evals: Vec<usize> = (0..proj.len())
        .filter(|&i| proj[i].kind_ref.report_role() == ReportRole::Evaluation)
        .collect();
    if evals.is_empty() {
        return;
    }
    section(s, "evaluation", "Evaluation");
    for i in evals {
        let x = &proj[i];
        heading(s, x);
        let Some(m) = typed(x, read_evaluation) else {
            not_run(s);
            continue;
        };
        s.push_str("<div class=\"row\">");
        let shown: Vec<(String, f64)> = m
            .per_position
            .iter()
            .enumerate()
            .filter_map(|(k, v)| Some((format!("{}", k + 1), (*v)?)))
            .collect();
        let (labels, values): (Vec<String>, Vec<f64>) = shown.into_iter().unzip();
        s.push_str(&plots::bars(
            "accuracy by digit position",
            &labels,
            &values,
            true,
            plots::BLUE_,
        ));
        s.push_str("</div><div class=\"row\">");
        let names = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "_"];
        for (h, head) in m.confusion.iter().enumerate() {
            let mat: Vec<Vec<u64>> = head.iter().map(|row| row.to_vec()).collect();
            if mat.iter().flatten().all(|c| *c == 0) {
                continue;
            }
            s.push_str(&plots::heatmap(
                &format!("confusion, position {}", h + 1),
                &mat,
                &names[..mat.len().min(names.len())],
            ));
        }
        s.push_str("</div><p class=\"muted\">Rows: true class, columns: predicted; <code>_</code> is blank (no digit). Shading grows with the square root of the count.</p>");
        let pred = upstream(p, proj, i, "predictions");
        let data = upstream(p, proj, i, "data");
        match (pred, data) {
            (Some(pred), Some(data)) => misreads(s, pred, data),
            _ => {
                s.push_str("<p class=\"muted\">misread images: the inputs' artifacts are gone</p>")
            }
        }
    }
}

fn misreads(s: &mut String, pred: &Path, data: &Path) {
    let (Ok(out), Ok(index)) = (
        crate::artifact::prediction::read_output(pred),
        DataIndex::load(data),
    ) else {
        s.push_str("<p class=\"muted\">misread images: the predictions cannot be read</p>");
        return;
    };
    let classes = out.final_classes();
    let mut wrong = Vec::new();
    let mut total = 0usize;
    for (item, c) in out.items.iter().zip(&classes) {
        let Some(d) = index.items.get(item.index) else {
            continue;
        };
        let Some(label) = &d.label else { continue };
        let got = decode::code(c);
        if &got != label {
            total += 1;
            if wrong.len() < MISREADS {
                wrong.push((d.file.clone(), d.code(), digits(&got)));
            }
        }
    }
    let _ = write!(
        s,
        "<p>{total} of {} images misread{}</p><div class=\"thumbs\">",
        out.items.len(),
        if total > wrong.len() {
            format!("; the first {}:", wrong.len())
        } else if total > 0 {
            ":".into()
        } else {
            String::new()
        }
    );
    for (file, truth, got) in wrong {
        let img = match thumbs::data_uri(&data.join(IMAGES_DIR).join(&file)) {
            Ok(uri) => format!("<img src=\"{uri}\" alt=\"{}\">", esc(&file)),
            Err(e) => format!("<span class=\"muted\">{}</span>", esc(&e)),
        };
        let _ = write!(
            s,
            "<figure>{img}<figcaption title=\"{}\">true <b>{}</b> · read <b class=\"bad\">{}</b></figcaption></figure>",
            esc(&file),
            esc(&truth),
            esc(if got.is_empty() { "∅" } else { &got })
        );
    }
    s.push_str("</div>");
}

fn digits(code: &[u8]) -> String {
    code.iter().map(|d| char::from(b'0' + d)).collect()
}

fn timing(s: &mut String, proj: &[Projected], seconds: &[Option<f64>]) {
    section(s, "timings", "Node timings");
    let rows: Vec<(String, f64)> = proj
        .iter()
        .zip(seconds)
        .filter_map(|(x, t)| Some((x.instance.clone(), (*t)?)))
        .collect();
    if rows.is_empty() {
        s.push_str("<p class=\"muted\">nothing has run</p>");
        return;
    }
    let total: f64 = rows.iter().map(|r| r.1).sum();
    let _ = write!(
        s,
        "<p>compute time of the cached artifacts: {} in all</p>",
        secs(total)
    );
    s.push_str(&plots::timings(
        "seconds per node (when it was computed)",
        &rows,
    ));
}

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1200px; padding: 0 16px; color: #111827; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; margin-top: 32px; }
h3 { margin: 16px 0 6px; font-size: 15px; }
.muted { color: #6b7280; } .bad { color: #b91c1c; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 4px 10px; border-bottom: 1px solid #e5e7eb; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.thumbs { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; padding: 6px; border: 1px solid #e5e7eb; border-radius: 6px; text-align: center; }
figure img { height: 48px; image-rendering: auto; display: block; margin: 0 auto 4px; }
figcaption { font-size: 12px; }
.legend { font-size: 13px; } .sw { display: inline-block; width: 14px; height: 10px; border: 2px solid; border-radius: 3px; margin: 0 4px 0 12px; vertical-align: middle; }
.sw.executed { background: #fff7ed; border-color: #ea580c; } .sw.cached { background: #f0fdf4; border-color: #16a34a; } .sw.not-run { background: #f9fafb; border-color: #9ca3af; border-style: dashed; }
"#;

const SCRIPT: &str = r#"
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message || e.type)); }, true);
  window.addEventListener("load", function () {
    var imgs = document.images;
    for (var i = 0; i < imgs.length; i++) {
      if (!imgs[i].complete || imgs[i].naturalWidth === 0) { errors.push("image " + imgs[i].alt + " did not decode"); }
    }
    document.documentElement.setAttribute("data-render", errors.length ? "errors: " + errors.join("; ") : "ok");
  });
})();
"#;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\" data-render=\"pending\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<script>{SCRIPT}</script>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n<footer class=\"muted\"><p>Generated by foldwise {} from the cache; nothing was run.</p></footer>\n</body>\n</html>\n",
        esc(title),
        env!("CARGO_PKG_VERSION")
    )
}

/// Escapes text for HTML (and SVG) content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

/// A duration for people (`12ms`, `3.4s`, `2m 05s`).
pub fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let m = (s / 60.0).floor();
        format!("{m:.0}m {:02.0}s", s - m * 60.0)
    }
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time (UTC; proleptic Gregorian).
pub fn utc(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let rem = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictions::ladder::{Single, Step};

    #[test]
    fn dates_durations_and_escapes() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_860_000), "2026-11-28 10:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(secs(0.012), "12ms");
        assert_eq!(secs(125.0), "2m 05s");
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }

    #[test]
    fn the_ladder_shows_every_step_including_later_ones() {
        let row = |step: &str, members, seq_acc, char_acc, len_acc| Step {
            step: step.into(),
            members,
            seq_acc,
            char_acc,
            len_acc,
        };
        let single = Single {
            model: "cnn[0]".into(),
            snapshot: "final".into(),
            seq_acc: 0.5,
            char_acc: 0.7,
        };
        let m = Ladder {
            n: 10,
            rows: vec![
                row("single", 1, 0.5, 0.7, 0.9),
                row("snapshots", 2, 0.55, 0.72, 0.9),
                row("tta", 4, 0.6, 0.75, 0.9),
                row("folds", 12, 0.7, 0.8, 0.95),
                row("post_processing", 12, 0.72, 0.8, 0.96),
            ],
            best: single.clone(),
            snapshots: vec!["final".into()],
            rounds: 2,
            models: vec!["cnn[0]".into()],
            singles: vec![single],
            single_mean_seq_acc: 0.5,
            single_min_seq_acc: 0.5,
        };
        let h = ladder_html("ladder", &m);
        for s in [
            "best single model",
            "+ snapshots",
            "+ TTA",
            "+ folds",
            "+ post processing",
            "72.00%",
        ] {
            assert!(h.contains(s), "{s} missing in {h}");
        }
    }
}
