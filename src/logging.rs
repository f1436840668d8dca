//! The log on stderr: plain text (colour only on a terminal), JSON lines, or lines the
//! journal reads with their syslog priority, so that `journalctl -p err -u haldir` shows
//! haldir's errors. `auto` picks the journal format when stderr is the journal: systemd
//! sets `JOURNAL_STREAM=DEVICE:INODE` for a service whose output goes there, and stderr
//! is that stream when its device and inode are those (systemd.exec(5)). The priority
//! travels as a `<N>` prefix on each line, which the journal strips and stores
//! (`SyslogLevelPrefix=`, on by default; sd-daemon(3)).

use std::fmt;
use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// [`Format::Journald`] when stderr is the journal, else [`Format::Text`].
    Auto,
    /// Human-readable lines, coloured only on a terminal.
    Text,
    /// One JSON object per line.
    Json,
    /// `<N>target: message fields`, N the syslog priority of the level.
    Journald,
}

/// Installs the global subscriber writing to stderr (`HALDIR_LOG` filters, default
/// `info`).
pub fn init(format: Format) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HALDIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let journal = stderr_is_journal(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_identity(),
    );
    match resolve(format, journal) {
        Format::Json => builder.json().init(),
        Format::Journald => builder.event_format(JournalLines).init(),
        Format::Text | Format::Auto => builder.init(),
    }
}

/// The format `format` means when stderr is (`journal`) or is not the journal.
pub fn resolve(format: Format, journal: bool) -> Format {
    match format {
        Format::Auto if journal => Format::Journald,
        Format::Auto => Format::Text,
        other => other,
    }
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, decimal) names the file stderr is
/// (`stderr`: its device and inode).
pub fn stderr_is_journal(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let (Some(value), Some((device, inode))) = (journal_stream, stderr) else {
        return false;
    };
    let Some((want_device, want_inode)) = value.split_once(':') else {
        return false;
    };
    want_device.parse() == Ok(device) && want_inode.parse() == Ok(inode)
}

/// The device and inode of stderr, if it is open.
fn stderr_identity() -> Option<(u64, u64)> {
    let stderr = std::fs::File::open("/proc/self/fd/2").ok()?;
    let meta = stderr.metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The syslog priority of a level (RFC 5424 §6.2.1): error 3, warning 4, info 6, debug 7.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Lines for the journal: `<N>target: message fields`, no time stamp and no colour.
struct JournalLines;

impl<S, N> FormatEvent<S, N> for JournalLines
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
        let metadata = event.metadata();
        write!(
            writer,
            "<{}>{}: ",
            syslog_priority(*metadata.level()),
            metadata.target()
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_the_journal_only_when_device_and_inode_match() {
        assert!(stderr_is_journal(Some("8:12345"), Some((8, 12345))));
        assert!(!stderr_is_journal(Some("8:12345"), Some((8, 12346))));
        assert!(!stderr_is_journal(Some("9:12345"), Some((8, 12345))));
        assert!(!stderr_is_journal(None, Some((8, 12345))));
        assert!(!stderr_is_journal(Some("8:12345"), None));
        assert!(!stderr_is_journal(Some("garbage"), Some((8, 12345))));
    }

    #[test]
    fn auto_is_journald_on_the_journal_and_text_elsewhere() {
        assert_eq!(resolve(Format::Auto, true), Format::Journald);
        assert_eq!(resolve(Format::Auto, false), Format::Text);
        assert_eq!(resolve(Format::Json, true), Format::Json);
        assert_eq!(resolve(Format::Text, true), Format::Text);
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(syslog_priority(Level::ERROR), 3);
        assert_eq!(syslog_priority(Level::WARN), 4);
        assert_eq!(syslog_priority(Level::INFO), 6);
        assert_eq!(syslog_priority(Level::DEBUG), 7);
    }
}
