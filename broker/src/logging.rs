//! The `baton` binary's log: what it writes to stderr, and at which level.
//!
//! `BATON_LOG` takes `tracing`'s filter syntax (`info`, `warn,broker=debug`,
//! `info,openraft=debug`) and, when set, is used exactly as given; a value
//! that does not parse stops the process at start with the reason.
//!
//! Unset (or empty), the filter is [`DEFAULT_FILTER`]: Baton's own events at
//! info, openraft's at warn. On top of that, the default drops the few
//! openraft warnings and errors that normal operation produces, so that an
//! ERROR line in the default log always means something is wrong:
//!
//! - a peer controller that cannot be reached (it is starting, stopped, or
//!   one of a minority that is down): openraft reports every failed vote,
//!   heartbeat, replication and read confirmation, about 15 errors a second
//!   per unreachable peer. The controller's own network code reports each
//!   peer's reachability instead, once per change (`controller::raft::peers`);
//! - a vote answer arriving after the vote it answered has changed, and a
//!   restarted leader's replication finding that another was elected;
//! - `Can not initialize` from a restarted controller that proposes the
//!   initial membership again (openraft refuses it, which is the point).
//!
//! Any of these with another cause (a storage error, an error answered by
//! the peer) still passes. `BATON_LOG=info,openraft=debug` shows everything.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// The filter when `BATON_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info,openraft=warn";

/// Installs the process's logger from `BATON_LOG` (see the module doc).
/// Fails, naming the variable, when its value is not a valid filter.
pub fn init() -> anyhow::Result<()> {
    let configured = std::env::var("BATON_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = match &configured {
        Some(value) => EnvFilter::builder()
            .parse(value)
            .map_err(|e| anyhow::anyhow!("invalid BATON_LOG={value:?}: {e}"))?,
        None => EnvFilter::new(DEFAULT_FILTER),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tracing_subscriber::registry()
        .with(filter)
        .with(configured.is_none().then_some(QuietOpenraft))
        .with(fmt)
        .init();
    Ok(())
}

/// Drops openraft's normal-operation warnings and errors (see the module
/// doc). A layer, so that it sees each event's message and error fields.
struct QuietOpenraft;

impl<S: Subscriber> Layer<S> for QuietOpenraft {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if !meta.target().starts_with("openraft") || *meta.level() > Level::WARN {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        !is_normal_operation(meta.target(), *meta.level(), &fields.message, &fields.error)
    }
}

/// The message and the error field of one event.
#[derive(Default)]
struct Fields {
    message: String,
    error: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            // openraft names it `error`, `err` or `result` by call site.
            "error" | "err" | "result" => self.error = format!("{value:?}"),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// How openraft renders an RPC that failed in the network (its `RPCError`
/// variants `Unreachable`, `Network` and `Timeout`), as opposed to one the
/// peer answered with an error.
fn is_network_failure(text: &str) -> bool {
    ["Unreachable node", "NetworkError", "timeout after"]
        .iter()
        .any(|p| text.contains(p))
}

/// Whether an openraft event at `level` (WARN or ERROR) with this target,
/// message and error field is one that normal operation produces.
fn is_normal_operation(target: &str, level: Level, message: &str, error: &str) -> bool {
    let network = is_network_failure(error) || is_network_failure(message);
    match (target, level) {
        ("openraft::core::raft_core", Level::ERROR) => {
            (message == "while requesting vote"
                || message == "timeout while confirming leadership for read request")
                && network
        }
        ("openraft::core::raft_core", Level::WARN) => {
            message.starts_with("A message will be ignored because vote changed")
        }
        ("openraft::replication", _) => {
            (message == "RPCError" || message.starts_with("error replication to target="))
                && (network || error.starts_with("seen a higher vote"))
                || message.contains("backoff mode: drain events without processing them")
        }
        ("openraft::engine::handler::replication_handler", Level::WARN) => {
            (message == "update progress error" || message.starts_with("heartbeat error: "))
                && network
        }
        ("openraft::engine::engine_impl", Level::ERROR) => message == "Can not initialize",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: &str = "openraft::core::raft_core";
    const REPL: &str = "openraft::replication";
    const HANDLER: &str = "openraft::engine::handler::replication_handler";
    const ENGINE: &str = "openraft::engine::engine_impl";
    const REFUSED: &str =
        "Unreachable node: std::io::error::Error: Connection refused (os error 111)";
    const CLOSED: &str = "NetworkError: std::io::error::Error: connection closed";
    const TIMEOUT: &str = "timeout after 150ms when Vote 1->3";
    const STORAGE: &str = "StorageError: failed to write log";
    const REMOTE: &str = "RemoteError from 2: Fatal";

    #[test]
    fn normal_operation_table() {
        // (target, level, message, error field, dropped at the default level)
        let cases = [
            // A voter down at start or for good: every vote, replication,
            // heartbeat and read confirmation to it fails.
            (CORE, Level::ERROR, "while requesting vote", REFUSED, true),
            (CORE, Level::ERROR, "while requesting vote", TIMEOUT, true),
            (CORE, Level::ERROR, "timeout while confirming leadership for read request", REFUSED, true),
            (REPL, Level::ERROR, "RPCError", REFUSED, true),
            (REPL, Level::ERROR, "RPCError", CLOSED, true),
            (REPL, Level::WARN, "error replication to target=2", REFUSED, true),
            // A restarted leader learning that another was elected.
            (REPL, Level::WARN, "error replication to target=3", "seen a higher vote: T3-N2:committed GT mine: T2-N1:committed", true),
            (REPL, Level::WARN, "openraft::replication::ReplicationCore<_, _, _>::backoff_drain_events backoff mode: drain events without processing them", "", true),
            (HANDLER, Level::WARN, "update progress error", REFUSED, true),
            (HANDLER, Level::WARN, &format!("heartbeat error: {CLOSED}, no update to inflight data"), "", true),
            // Late vote answers and a restart's repeated initialization.
            (CORE, Level::WARN, "A message will be ignored because vote changed: msg sent by vote: T2-N1:uncommitted; current my vote: None; when (VoteResponse)", "", true),
            (ENGINE, Level::ERROR, "Can not initialize", "", true),
            // The same call sites with a cause that is not the network pass.
            (CORE, Level::ERROR, "while requesting vote", REMOTE, false),
            (REPL, Level::ERROR, "error replication to target=2", STORAGE, false),
            (REPL, Level::ERROR, "RPCError", REMOTE, false),
            (HANDLER, Level::WARN, "update progress error", REMOTE, false),
            (HANDLER, Level::WARN, &format!("heartbeat error: {REMOTE}, no update"), "", false),
            // Anything else passes, whatever its error.
            (CORE, Level::ERROR, "fail to join task: cancelled", REFUSED, false),
            (ENGINE, Level::WARN, "Can not initialize", "", false),
            ("openraft::storage", Level::ERROR, "RPCError", REFUSED, false),
            ("broker::state", Level::ERROR, "while requesting vote", REFUSED, false),
        ];
        for (target, level, message, error, dropped) in cases {
            assert_eq!(
                is_normal_operation(target, level, message, error),
                dropped,
                "{target} {level} {message:?} {error:?}"
            );
        }
    }

    #[test]
    fn the_default_filter_parses() {
        EnvFilter::builder()
            .parse(DEFAULT_FILTER)
            .expect("default filter");
    }
}
