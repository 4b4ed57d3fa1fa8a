//! The CLI's logging: `tracing-subscriber` (filtered by `PRIVY_LOG`)
//! writing through the process's one `logging::Sink`.

use crate::config::Config;
use crate::contract;

/// Send logs to the config's log file as JSON lines (hooks), or stderr,
/// through this process's one [`crate::logging::Sink`]. Returns whether
/// they go to the file.
pub(super) fn init(cfg: Option<&Config>, default_level: &str) -> bool {
    use crate::logging::{self, Sink};
    let filter = tracing_subscriber::EnvFilter::try_from_env(contract::ENV_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let sink = logging::install(
        cfg.and_then(|c| Sink::open(&c.log_file))
            .unwrap_or_else(Sink::stderr),
    );
    let to_file = sink.is_file();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(SinkWriter(sink));
    let _ = if to_file {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    to_file
}

/// `tracing-subscriber`'s writer over the process's sink: each formatted
/// line is written whole, under the sink's lock.
struct SinkWriter(&'static crate::logging::Sink);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SinkWriter {
    type Writer = SinkLine;

    fn make_writer(&'a self) -> SinkLine {
        SinkLine(self.0)
    }
}

struct SinkLine(&'static crate::logging::Sink);

impl std::io::Write for SinkLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
