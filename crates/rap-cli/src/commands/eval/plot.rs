//! The scaling curve as an SVG chart (plotters, SVG backend only: text is left to the viewer's
//! fonts, so no font library is built).

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use rap_eval::scaling::ScalingReport;
use std::path::Path;

/// Draws recall@1 and recall@5 against the number of concepts in the memory.
pub fn scaling_svg(report: &ScalingReport, path: &Path) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", path.display());
    let root = SVGBackend::new(path, (760, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let x_max = report
        .points
        .iter()
        .map(|p| p.concepts)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    // The y axis starts a little below the lowest recall (in tenths), so the curve is readable.
    let lowest = report
        .points
        .iter()
        .map(|p| p.recall_at_1.min(p.recall_at_5))
        .fold(1.0f64, f64::min);
    let y_min = ((lowest - 0.05) * 10.0).floor().max(0.0) / 10.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Retrieval recall as the memory grows ({}, {} queries)",
                report.encoder, report.queries
            ),
            ("sans-serif", 18),
        )
        .margin(18)
        .x_label_area_size(42)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..x_max * 1.05, y_min..1.01f64)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("concepts in memory")
        .y_desc("recall")
        .draw()
        .map_err(|e| fail(&e))?;
    type Recall = fn(&rap_eval::scaling::ScalingPoint) -> f64;
    let series: [(&str, RGBColor, Recall); 2] = [
        ("recall@1", BLUE, |p| p.recall_at_1),
        ("recall@5", RED, |p| p.recall_at_5),
    ];
    for (label, color, value) in series {
        let points: Vec<(f64, f64)> = report
            .points
            .iter()
            .map(|p| (p.concepts as f64, value(p)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
