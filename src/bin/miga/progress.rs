//! Progress bars for long work (on standard error, hidden when it is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items of `unit`, with rate and time left.
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{bar:40}} {{pos}}/{{len}} {unit} [{{elapsed_precise}}, {{per_sec}}, {{eta}} left]"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
