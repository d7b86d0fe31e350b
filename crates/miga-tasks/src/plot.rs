//! Plots as SVG text, with no plotting dependency: training curves and confusion matrices.

use std::fmt::Write;

/// A named series of (x, y) points.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// Panels side by side, each `(y-axis title, curves)`, x being the epoch.
pub fn line_chart(title: &str, panels: &[(&str, Vec<Curve>)]) -> String {
    let (w, h, margin) = (420.0, 300.0, 50.0);
    let total_w = w * panels.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/><text x="{}" y="20" text-anchor="middle" font-size="15">{title}</text>"#,
        h + 30.0,
        total_w / 2.0
    );
    for (p, (axis, curves)) in panels.iter().enumerate() {
        let x0 = p as f64 * w + margin;
        let (pw, ph, y0) = (w - margin - 20.0, h - margin - 20.0, 40.0);
        let points = curves.iter().flat_map(|c| c.points.iter());
        let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            xmin = xmin.min(x);
            xmax = xmax.max(x);
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
        if xmin > xmax {
            (xmin, xmax, ymin, ymax) = (0.0, 1.0, 0.0, 1.0);
        }
        if xmax - xmin < 1e-9 {
            xmax = xmin + 1.0;
        }
        if ymax - ymin < 1e-9 {
            ymax = ymin + 1.0;
        }
        let sx = |x: f64| x0 + (x - xmin) / (xmax - xmin) * pw;
        let sy = |y: f64| y0 + ph - (y - ymin) / (ymax - ymin) * ph;
        let _ = write!(
            svg,
            r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>"##
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">epoch</text>"#,
            x0 + pw / 2.0,
            y0 + ph + 32.0
        );
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{axis}</text>"#,
            x0 - 38.0,
            y0 + ph / 2.0,
            x0 - 38.0,
            y0 + ph / 2.0
        );
        for k in 0..=4 {
            let y = ymin + (ymax - ymin) * k as f64 / 4.0;
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="end" font-size="10">{y:.3}</text>"#,
                x0 - 4.0,
                sy(y) + 3.0
            );
            let x = xmin + (xmax - xmin) * k as f64 / 4.0;
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" font-size="10">{x:.0}</text>"#,
                sx(x),
                y0 + ph + 14.0
            );
        }
        for (i, curve) in curves.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let path: Vec<String> = curve
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
                x0 + 8.0,
                y0 + 14.0 + 14.0 * i as f64,
                curve.label
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_every_curve() {
        let curve = |label: &str| Curve {
            label: label.into(),
            points: vec![(1.0, 2.0), (2.0, 1.0)],
        };
        let svg = line_chart(
            "T",
            &[
                ("loss", vec![curve("train"), curve("valid")]),
                ("acc", vec![]),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(">valid<"));
    }
}
