//! What the commands say besides their results, through `tracing`: information by default,
//! warnings and errors only with `-q`, debugging detail with `-v` (and trace events with
//! `-vv`).
//! Written to standard error as plain lines: information as it is, the other levels with
//! their name first (`warning: ...`). The libraries report through the same events (an epoch
//! line of training, for one). Progress bars are not events and stay.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the process's subscriber for `-q` / `-v` (count): miga's own events, at the level
/// they ask for (the dependencies' logs, wgpu's and burn's, are not shown).
pub fn init(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => LevelFilter::WARN,
        (false, 0) => LevelFilter::INFO,
        (false, 1) => LevelFilter::DEBUG,
        (false, _) => LevelFilter::TRACE,
    };
    let filter = Targets::new().with_target("miga", level);
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(Plain);
    let _ = tracing_subscriber::registry()
        .with(output)
        .with(filter)
        .try_init();
}

/// `warning: message`, or the message alone for information.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match *event.metadata().level() {
            Level::INFO => {}
            Level::WARN => write!(writer, "warning: ")?,
            Level::ERROR => write!(writer, "error: ")?,
            Level::DEBUG => write!(writer, "debug: ")?,
            Level::TRACE => write!(writer, "trace: ")?,
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
