//! The report's charts, drawn by `plotters` into SVG strings (its text is
//! left to the browser's fonts, so no font file is needed).
//!
//! Every function returns one `<svg>` element; a drawing error (which the
//! SVG backend only raises for impossible ranges) gives an SVG that says
//! so rather than failing the report.

use plotters::prelude::*;

/// One line of a line chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

pub const BLUE_: RGBColor = RGBColor(37, 99, 235);
pub const ORANGE: RGBColor = RGBColor(234, 88, 12);
pub const GREEN_: RGBColor = RGBColor(22, 163, 74);
pub const PURPLE: RGBColor = RGBColor(124, 58, 237);
pub const GREY: RGBColor = RGBColor(107, 114, 128);

const FONT: &str = "sans-serif";

type Res = Result<(), Box<dyn std::error::Error>>;

fn svg(
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<SVGBackend, plotters::coord::Shift>) -> Res,
) -> String {
    let mut s = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut s, size).into_drawing_area();
        draw(root)
    };
    match result {
        Ok(()) => s,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\"><text x=\"8\" y=\"20\">chart failed: {}</text></svg>",
            size.0,
            size.1,
            super::html::esc(&e.to_string())
        ),
    }
}

fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// A line chart over epochs; `marks` are points drawn as circles on the
/// first series (snapshots); `y` fixes the vertical range.
pub fn lines(
    title: &str,
    y_desc: &str,
    series: &[Series],
    marks: &[(f64, f64)],
    y: Option<(f64, f64)>,
) -> String {
    svg((360, 240), |root| {
        root.fill(&WHITE)?;
        let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (x0, x1) = span(xs);
        let (y0, y1) =
            y.unwrap_or_else(|| span(series.iter().flat_map(|s| s.points.iter().map(|p| p.1))));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(y_desc)
            .x_labels(((x1 - x0).round() as usize + 1).clamp(2, 10))
            .y_labels(6)
            .x_label_formatter(&|v| whole(*v))
            .y_label_formatter(&|v| tick(*v, y1 - y0))
            .light_line_style(WHITE)
            .draw()?;
        for s in series {
            let c = s.color;
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))?
                .label(s.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
        }
        if !marks.is_empty() {
            chart
                .draw_series(
                    marks
                        .iter()
                        .map(|&p| Circle::new(p, 6, BLACK.stroke_width(2))),
                )?
                .label("snapshot")
                .legend(|(x, y)| Circle::new((x + 8, y), 5, BLACK.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FONT, 12))
            .draw()?;
        root.present()?;
        Ok(())
    })
}

/// Vertical bars with a category label each; values are fractions shown
/// as percentages when `percent`.
pub fn bars(
    title: &str,
    labels: &[String],
    values: &[f64],
    percent: bool,
    color: RGBColor,
) -> String {
    let w = (120 + 70 * labels.len() as u32).clamp(320, 720);
    svg((w, 260), |root| {
        root.fill(&WHITE)?;
        let n = labels.len().max(1) as f64;
        let top = if percent {
            1.0
        } else {
            values.iter().copied().fold(0.0, f64::max).max(1e-9) * 1.1
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(-0.5..n - 0.5, 0.0..top)?;
        let labels_for_axis = labels.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len().max(1))
            .x_label_formatter(&move |v| cell_label(&labels_for_axis, *v))
            .y_label_formatter(&|v| {
                if percent {
                    format!("{:.0}%", v * 100.0)
                } else {
                    compact(*v)
                }
            })
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
            let x = i as f64;
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, v.max(0.0))], color.filled())
        }))?;
        chart.draw_series(values.iter().enumerate().map(|(i, &v)| {
            let text = if percent {
                format!("{:.1}%", v * 100.0)
            } else {
                compact(v)
            };
            Text::new(
                text,
                (i as f64, v.max(0.0)),
                (FONT, 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Bottom,
                    )),
            )
        }))?;
        root.present()?;
        Ok(())
    })
}

/// A confusion matrix (rows: true class, columns: predicted class) as a
/// heat map; `names` label both axes.
pub fn heatmap(title: &str, m: &[Vec<u64>], names: &[&str]) -> String {
    svg((300, 300), |root| {
        root.fill(&WHITE)?;
        let n = m.len();
        let max = m.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(30)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, n as f64 - 0.5..-0.5)?;
        let (xn, yn): (Vec<String>, Vec<String>) = (
            names.iter().map(|s| s.to_string()).collect(),
            names.iter().map(|s| s.to_string()).collect(),
        );
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .x_desc("predicted")
            .y_desc("true")
            .x_label_formatter(&move |v| cell_label(&xn, *v))
            .y_label_formatter(&move |v| cell_label(&yn, *v))
            .draw()?;
        chart.draw_series(m.iter().enumerate().flat_map(|(a, row)| {
            row.iter().enumerate().map(move |(b, &c)| {
                // Square root scale: a few errors stay visible beside the diagonal.
                let t = (c as f64 / max).sqrt();
                let shade = |full: u8| (255.0 - t * (255.0 - full as f64)).round() as u8;
                let color = if c == 0 {
                    RGBColor(250, 250, 250)
                } else if a == b {
                    RGBColor(shade(22), shade(101), shade(52))
                } else {
                    RGBColor(shade(185), shade(28), shade(28))
                };
                Rectangle::new(
                    [(b as f64, a as f64), (b as f64 + 1.0, a as f64 + 1.0)],
                    color.filled(),
                )
            })
        }))?;
        root.present()?;
        Ok(())
    })
}

/// The name at an integer axis position `v`; empty between positions.
fn cell_label(names: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Horizontal bars of seconds by name.
pub fn timings(title: &str, rows: &[(String, f64)]) -> String {
    let h = (60 + 24 * rows.len() as u32).max(120);
    svg((720, h), |root| {
        root.fill(&WHITE)?;
        let n = rows.len().max(1) as f64;
        let top = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-3) * 1.15;
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(130)
            .build_cartesian_2d(0.0..top, n - 0.5..-0.5)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len().max(1))
            .y_label_formatter(&move |v| cell_label(&names, *v))
            .x_label_formatter(&|v| format!("{}s", compact(*v)))
            .x_desc("seconds")
            .light_line_style(WHITE)
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            let y = i as f64;
            Rectangle::new([(0.0, y - 0.35), (r.1, y + 0.35)], BLUE_.filled())
        }))?;
        root.present()?;
        Ok(())
    })
}

/// An epoch tick: whole numbers only.
fn whole(v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// A value tick with enough digits to tell ticks `range / 5` apart.
fn tick(v: f64, range: f64) -> String {
    if v.abs() < range.abs() * 1e-9 {
        return "0".into();
    }
    let step = (range / 5.0).abs();
    if step == 0.0 || !step.is_finite() {
        return compact(v);
    }
    let mag = v.abs().max(step);
    if !(1e-3..1e5).contains(&mag) {
        let digits = ((mag / step).log10().ceil().max(0.0) as usize).min(6);
        return format!("{v:.digits$e}");
    }
    let decimals = (-step.log10().floor()).clamp(0.0, 8.0) as usize;
    format!("{v:.decimals$}")
}

/// A number in few characters (`0.0012`, `1.5`, `320`, `1.2e5`).
fn compact(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a < 1.0 {
        format!("{v:.3}").trim_end_matches('0').to_string()
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_titles() {
        let s = lines(
            "cnn[0] loss",
            "loss",
            &[Series {
                name: "train",
                color: BLUE_,
                points: vec![(1.0, 2.0), (2.0, 1.5)],
            }],
            &[(2.0, 1.5)],
            None,
        );
        assert!(s.starts_with("<svg") && s.contains("cnn[0] loss"), "{s}");
        let b = bars(
            "per position",
            &["0".into(), "1".into()],
            &[0.5, 0.25],
            true,
            GREEN_,
        );
        assert!(b.contains("50.0%"), "{b}");
        let m = vec![vec![3, 1], vec![0, 2]];
        assert!(heatmap("head 0", &m, &["0", "1"]).contains("<rect"));
        assert!(timings("t", &[("a".into(), 1.0)]).contains("<rect"));
        assert_eq!(compact(0.125), "0.125");
        assert_eq!(compact(12.0), "12");
        assert_eq!(tick(0.00095, 0.0001), "9.50e-4");
        assert_eq!(tick(2.345, 0.06), "2.35");
        assert_eq!(tick(0.4, 1.0), "0.4");
        assert_eq!(tick(1e-20, 8e-4), "0");
        assert_eq!(whole(2.0), "2");
        assert_eq!(whole(1.5), "");
    }
}
