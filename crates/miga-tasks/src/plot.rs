//! Charts as SVG text, drawn with plotters' SVG backend (pure Rust, no font or system library:
//! text is left to the viewer): training curves and confusion matrices.

use plotters::prelude::*;

/// A named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// Why a chart could not be drawn.
type Drawn = std::result::Result<(), String>;

fn drawn<E: std::fmt::Debug>(result: std::result::Result<(), E>) -> Drawn {
    result.map_err(|e| format!("{e:?}"))
}

/// The range of `values` (finite ones), widened when empty or flat.
fn range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
    match (low <= high, high - low) {
        (false, _) => 0.0..1.0,
        (true, span) if span < 1e-9 => low..low + 1.0,
        (true, span) => low - 0.02 * span..high + 0.02 * span,
    }
}

/// Panels side by side, each `(y-axis title, curves)`, x being the epoch. Points that are not
/// finite (a diverged loss) are left out.
pub fn line_chart(title: &str, panels: &[(&str, Vec<Curve>)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let width = 420 * panels.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 330)).into_drawing_area();
        drawn(root.fill(&WHITE))?;
        let root = root
            .titled(title, ("sans-serif", 16))
            .map_err(|e| format!("{e:?}"))?;
        for (area, (axis, curves)) in root
            .split_evenly((1, panels.len().max(1)))
            .iter()
            .zip(panels)
        {
            let points = || curves.iter().flat_map(|c| c.points.iter());
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(range(points().map(|p| p.0)), range(points().map(|p| p.1)))
                .map_err(|e| format!("{e:?}"))?;
            drawn(
                chart
                    .configure_mesh()
                    .x_desc("epoch")
                    .y_desc(*axis)
                    .x_labels(5)
                    .y_labels(5)
                    .draw(),
            )?;
            for (i, curve) in curves.iter().enumerate() {
                let colour = Palette99::pick(i).to_rgba();
                let finite = curve
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite());
                chart
                    .draw_series(LineSeries::new(finite, colour.stroke_width(2)))
                    .map_err(|e| format!("{e:?}"))?
                    .label(curve.label.clone())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
            }
            if !curves.is_empty() {
                drawn(
                    chart
                        .configure_series_labels()
                        .background_style(WHITE.mix(0.8))
                        .border_style(BLACK.mix(0.3))
                        .draw(),
                )?;
            }
        }
        drawn(root.present())?;
    }
    Ok(format!("{}\n", svg.trim_end()))
}

/// A matrix of counts as a heat map, each row shaded by its share of the row's total (rows:
/// true class, columns: predicted), with `labels` on both axes.
pub fn heat_map(title: &str, labels: &[String], rows: &[Vec<usize>]) -> Result<String, String> {
    let n = rows.len().max(1);
    let mut svg = String::new();
    {
        let size = 60 + 14 * n as u32;
        let root = SVGBackend::with_string(&mut svg, (size, size + 20)).into_drawing_area();
        drawn(root.fill(&WHITE))?;
        let root = root
            .titled(title, ("sans-serif", 11))
            .map_err(|e| format!("{e:?}"))?;
        let label = |i: &usize| labels.get(*i).cloned().unwrap_or_default();
        let mut chart = ChartBuilder::on(&root)
            .margin(4)
            .x_label_area_size(24)
            .y_label_area_size(24)
            .build_cartesian_2d((0..n).into_segmented(), (0..n).into_segmented())
            .map_err(|e| format!("{e:?}"))?;
        drawn(
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(n)
                .y_labels(n)
                .x_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => label(i),
                    _ => String::new(),
                })
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => {
                        n.checked_sub(1 + i).map_or(String::new(), |r| label(&r))
                    }
                    _ => String::new(),
                })
                .label_style(("sans-serif", 8))
                .draw(),
        )?;
        let cells = rows.iter().enumerate().flat_map(|(i, row)| {
            let total = row.iter().sum::<usize>().max(1) as f64;
            row.iter().enumerate().map(move |(j, &count)| {
                let shade = (255.0 * (1.0 - count as f64 / total)).round() as u8;
                // Row 0 at the top.
                let (x, y) = (j, n - 1 - i);
                Rectangle::new(
                    [
                        (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                        (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                    ],
                    RGBColor(shade, shade, 255).filled(),
                )
            })
        });
        chart.draw_series(cells).map_err(|e| format!("{e:?}"))?;
        drawn(root.present())?;
    }
    Ok(format!("{}\n", svg.trim_end()))
}

/// A bar of a timeline: frames `start..=end`, coloured by `group`, with a label.
#[derive(Debug, Clone)]
pub struct Bar {
    /// First frame.
    pub start: u32,
    /// Last frame, inclusive.
    pub end: u32,
    /// Colour group (e.g. the class index).
    pub group: usize,
    /// Text drawn on the bar.
    pub label: String,
}

/// Lanes of bars over `frames` frames, one lane a row, named on the left.
pub fn timeline(
    title: &str,
    frames: usize,
    lanes: &[(String, Vec<Bar>)],
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let height = 70 + 40 * lanes.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (1000, height)).into_drawing_area();
        drawn(root.fill(&WHITE))?;
        let root = root
            .titled(title, ("sans-serif", 14))
            .map_err(|e| format!("{e:?}"))?;
        let rows = lanes.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..frames.max(1) as f64, 0f64..rows as f64)
            .map_err(|e| format!("{e:?}"))?;
        drawn(
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(rows * 2 + 1)
                .y_label_formatter(&|y| {
                    let lane = rows as f64 - y - 0.5;
                    match lanes.get(lane.round() as usize) {
                        Some((name, _)) if (lane - lane.round()).abs() < 1e-6 => name.clone(),
                        _ => String::new(),
                    }
                })
                .x_desc("frame")
                .draw(),
        )?;
        for (row, (_, bars)) in lanes.iter().enumerate() {
            let top = (rows - row) as f64 - 0.15;
            let bottom = (rows - row - 1) as f64 + 0.15;
            for bar in bars {
                let colour = Palette99::pick(bar.group).to_rgba();
                let (x0, x1) = (f64::from(bar.start), f64::from(bar.end) + 1.0);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, bottom), (x1, top)],
                        colour.filled(),
                    )))
                    .map_err(|e| format!("{e:?}"))?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        bar.label.clone(),
                        (x0, top),
                        ("sans-serif", 10),
                    )))
                    .map_err(|e| format!("{e:?}"))?;
            }
        }
        drawn(root.present())?;
    }
    Ok(format!("{}\n", svg.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_every_curve() {
        let curve = |label: &str| Curve {
            label: label.into(),
            points: vec![(1.0, 2.0), (2.0, 1.0), (3.0, f64::NAN)],
        };
        let svg = line_chart(
            "T",
            &[
                ("loss", vec![curve("train"), curve("valid")]),
                ("acc", vec![]),
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // One 2-pixel line a curve (axes and legend marks are 1 pixel), and their legend.
        assert_eq!(svg.matches(r#"stroke-width="2""#).count(), 2, "{svg}");
        let text = |t: &str| svg.contains(&format!(">\n{t}\n</text>"));
        assert!(
            text("train") && text("valid") && text("epoch") && text("acc"),
            "{svg}"
        );
        assert!(!svg.contains("NaN"));
    }

    #[test]
    fn heat_maps_shade_each_row_by_its_share() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let svg = heat_map("confusion", &labels, &[vec![3, 1], vec![0, 2]]).unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // Shares 3/4, 1/4, 0, 1: white-to-blue shades 64, 191, 255, 0.
        for shade in ["#4040FF", "#BFBFFF", "#FFFFFF", "#0000FF"] {
            assert!(svg.contains(shade), "{shade} in {svg}");
        }
        let text = |t: &str| svg.contains(&format!(">\n{t}\n</text>"));
        assert!(text("a") && text("b"), "{svg}");
    }
}
