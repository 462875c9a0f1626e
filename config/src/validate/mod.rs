//! Raw TOML types to the validated `Config`. Every check runs, whatever failed before it,
//! and each failure is recorded in `Ctx`; a `Config` is built only when none failed. Missing
//! keys and values of the wrong TOML type are found here too (see `raw`), so they are
//! reported with everything else.

mod action;
mod check;
mod identity;
mod jwt;
mod limit;
mod listener;
mod path;
mod pem;
pub use pem::certificate_subject;
mod protect;
mod resolver;
mod retry;
mod route;
mod tls;
mod upstream;

#[cfg(test)]
pub(crate) mod test_util;

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::error::{ConfigError, ConfigErrors, Lines};
use crate::model::{
    AccessLog, Admin, Config, Control, DriverChoice, Listener, Metrics, Resolver, Runtime, Shards,
};
use crate::raw::{
    At, IntOrText, List, RawAccessLog, RawAdmin, RawControl, RawMetrics, RawRuntime, Typed,
};

/// The shortest `metrics.interval`: shorter would have shards spend their time reporting.
const MIN_METRICS_INTERVAL: Duration = Duration::from_millis(100);
use crate::read::{locate, Doc, Read};

/// Where validation errors are collected.
pub(crate) struct Ctx<'a> {
    /// The running config's route regexes by anchored pattern, for a reload to reuse.
    running_regexes: HashMap<&'a str, &'a regex::Regex>,
    /// The addresses the running config's endpoints use, by host name: a name that still
    /// has one of them keeps it (see `resolve::choose`).
    running_addresses: HashMap<&'a str, Vec<IpAddr>>,
    /// Where endpoint names are looked up; `None` while `[resolver]` is invalid (reported
    /// there), and then names are not looked up.
    resolver: Option<Resolver>,
    /// What each endpoint name was found to have in this load, by lower-case name.
    looked_up: HashMap<String, Result<Vec<IpAddr>, String>>,
    /// The folder relative file paths (certificates, keys) resolve from.
    base: PathBuf,
    file: &'a str,
    lines: &'a Lines<'a>,
    doc: &'a Doc<'a>,
    errors: Vec<ConfigError>,
}

impl<'a> Ctx<'a> {
    /// The running config's compiled regex of this anchored pattern, if it has one.
    pub(super) fn running_regex(&self, anchored: &str) -> Option<&'a regex::Regex> {
        self.running_regexes.get(anchored).copied()
    }

    /// Records an error at `span`, or at the key `key` in the document when there is no span
    /// (a table made by dotted keys).
    pub(super) fn error_near(
        &mut self,
        span: Option<Range<usize>>,
        key: String,
        message: impl Into<String>,
    ) {
        let offset = span.map_or_else(|| locate(self.doc, &key), |span| span.start);
        self.error_at(offset, key, message);
    }

    /// Records an error at byte `offset` of the source.
    pub(super) fn error_at(&mut self, offset: usize, key: String, message: impl Into<String>) {
        let error = ConfigError::at(self.file, self.lines, offset, key, message.into());
        self.errors.push(error);
    }

    /// Records an error at the start of `value`.
    pub(super) fn error<T>(&mut self, value: &Spanned<T>, key: String, message: impl Into<String>) {
        self.error_at(value.span().start, key, message);
    }

    /// Records an error at `value` and returns `None`, for checks that produce a value.
    pub(super) fn fail<T, U>(
        &mut self,
        value: &Spanned<T>,
        key: String,
        message: impl Into<String>,
    ) -> Option<U> {
        self.error(value, key, message);
        None
    }

    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.lines.line(offset)
    }

    /// The value if it has the expected TOML type; else records the type error.
    pub(super) fn typed<'r, T>(
        &mut self,
        value: &'r Typed<T>,
        key: &str,
    ) -> Option<&'r Spanned<T>> {
        match value {
            Typed::Ok(value) => Some(value),
            Typed::Wrong { span, message } => {
                self.error_near(span.clone(), key.to_owned(), message.as_str());
                None
            }
        }
    }

    /// An optional key: `Some(None)` when absent, `None` when of the wrong type (recorded).
    pub(super) fn optional<'r, T>(
        &mut self,
        value: Option<&'r Typed<T>>,
        key: &str,
    ) -> Option<Option<&'r Spanned<T>>> {
        match value {
            None => Some(None),
            Some(value) => self.typed(value, key).map(Some),
        }
    }

    /// A required key `field` of the table at `table` whose path is `prefix`: missing or of
    /// the wrong type is recorded.
    pub(super) fn required<'r, T, U>(
        &mut self,
        value: Option<&'r Typed<T>>,
        (table, prefix): (&At<U>, &str),
        field: &str,
    ) -> Option<&'r Spanned<T>> {
        match value {
            Some(value) => self.typed(value, &format!("{prefix}.{field}")),
            None => {
                let message = format!("missing field `{field}`");
                self.error_near(table.span(), prefix.to_owned(), message);
                None
            }
        }
    }

    /// The elements of an array key, or `None` when something else was written (recorded).
    pub(super) fn list<'r, E>(&mut self, list: &'r List<E>, key: &str) -> Option<&'r [E]> {
        match list.items() {
            Ok(items) => Some(items),
            Err(error) => {
                self.error_near(list.span(), key.to_owned(), error);
                None
            }
        }
    }
}

/// Validates a whole document, reporting every error found (and the unknown keys `read`
/// found), in file order. What `running` (the config a reload replaces) has already compiled
/// is reused where the file asks for the same.
pub(crate) fn validate(
    read: Read<'_>,
    file: &str,
    src: &str,
    running: Option<&Config>,
) -> Result<Config, ConfigErrors> {
    let raw = &read.raw;
    let running_regexes = running
        .into_iter()
        .flat_map(|config| &config.routes)
        .filter_map(|route| match &route.path {
            crate::model::PathMatch::Regex(regex) => Some((regex.as_str(), regex)),
            _ => None,
        })
        .collect();
    let mut running_addresses: HashMap<&str, Vec<IpAddr>> = HashMap::new();
    let running_endpoints = running
        .into_iter()
        .flat_map(|config| &config.upstreams)
        .flat_map(|u| &u.endpoints);
    for e in running_endpoints {
        if let Some(host) = &e.host {
            running_addresses
                .entry(host)
                .or_default()
                .push(e.address.ip());
        }
    }
    let mut ctx = Ctx {
        running_regexes,
        running_addresses,
        resolver: None,
        looked_up: HashMap::new(),
        base: base_folder(file),
        file,
        lines: &read.lines,
        doc: &read.doc,
        errors: read.unknown_keys,
    };
    let runtime = runtime(&mut ctx, raw.runtime.as_ref());
    let control = control(&mut ctx, raw.control.as_ref());
    let listeners = listener::listeners(&mut ctx, &raw.listeners);
    let admin = raw
        .admin
        .as_ref()
        .and_then(|a| admin(&mut ctx, a, &listeners));
    let metrics = metrics(&mut ctx, raw.metrics.as_ref());
    let access_log = match raw.access_log.as_ref() {
        None => Some(None),
        Some(table) => access_log(&mut ctx, table).map(Some),
    };
    let resolver = resolver::resolver(&mut ctx, raw.resolver.as_ref());
    ctx.resolver = resolver.clone();
    let upstreams = upstream::upstreams(&mut ctx, &raw.upstreams);
    let jwt_providers = jwt::jwt_providers(&mut ctx, &raw.jwt_providers);
    let consumers = identity::consumers(&mut ctx, &raw.consumers);
    let routes = route::routes(&mut ctx, raw);
    let mut errors = ctx.errors;
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(ConfigErrors(errors));
    }
    match (runtime, control, metrics, access_log, resolver) {
        (Some(runtime), Some(control), Some(metrics), Some(access_log), Some(resolver)) => {
            Ok(Config {
                source: file.to_owned(),
                source_text: src.to_owned(),
                runtime,
                control,
                admin,
                metrics,
                access_log,
                listeners,
                resolver,
                upstreams,
                routes,
                consumers,
                jwt_providers,
            })
        }
        // Every `None` above comes with a recorded error.
        _ => unreachable!("a check failed without reporting an error"),
    }
}

/// The folder of the config file `file`, absolute where the current folder is known; the
/// current folder when `file` names none (`t.toml`) or is not a path (`<default>`).
fn base_folder(file: &str) -> PathBuf {
    let folder = match Path::new(file).parent() {
        Some(folder) if !file.starts_with('<') => folder,
        _ => Path::new(""),
    };
    if folder.is_absolute() {
        return folder.to_owned();
    }
    match std::env::current_dir() {
        Ok(current) if folder.as_os_str().is_empty() => current,
        Ok(current) => current.join(folder),
        Err(_) => folder.to_owned(),
    }
}

fn runtime(ctx: &mut Ctx<'_>, raw: Option<&RawRuntime>) -> Option<Runtime> {
    let Some(raw) = raw else {
        return Some(Runtime {
            shards: Shards::Auto,
            driver: DriverChoice::Auto,
            pin: true,
            uring_entries: 1024,
        });
    };
    let shards = match ctx.optional(raw.shards.as_ref(), "runtime.shards") {
        None => None,
        Some(None) => Some(Shards::Auto),
        Some(Some(spanned)) => match &spanned.get_ref().0 {
            IntOrText::Text(text) if text == "auto" => Some(Shards::Auto),
            IntOrText::Int(n) => match usize::try_from(*n)
                .ok()
                .and_then(std::num::NonZeroUsize::new)
            {
                Some(n) => Some(Shards::Count(n)),
                None => ctx.fail(
                    spanned,
                    "runtime.shards".into(),
                    format!("must be at least 1, got {n}"),
                ),
            },
            IntOrText::Text(text) => ctx.fail(
                spanned,
                "runtime.shards".into(),
                format!("expected \"auto\" or a number of shards, got \"{text}\""),
            ),
        },
    };
    let driver = match ctx.optional(raw.driver.as_ref(), "runtime.driver") {
        None => None,
        Some(None) => Some(DriverChoice::Auto),
        Some(Some(spanned)) => match spanned.get_ref().as_str() {
            "auto" => Some(DriverChoice::Auto),
            "io_uring" => Some(DriverChoice::IoUring),
            "epoll" => Some(DriverChoice::Epoll),
            other => ctx.fail(
                spanned,
                "runtime.driver".into(),
                format!("unknown driver \"{other}\"; expected \"auto\", \"io_uring\" or \"epoll\""),
            ),
        },
    };
    let pin = ctx
        .optional(raw.pin.as_ref(), "runtime.pin")
        .map(|pin| pin.is_none_or(|pin| *pin.get_ref()));
    let uring_entries = match ctx.optional(raw.uring_entries.as_ref(), "runtime.uring_entries") {
        None => None,
        Some(None) => Some(1024),
        Some(Some(spanned)) => match u32::try_from(*spanned.get_ref()) {
            Ok(n) if (2..=32768).contains(&n) && n.is_power_of_two() => Some(n),
            _ => ctx.fail(
                spanned,
                "runtime.uring_entries".into(),
                format!(
                    "must be a power of two from 2 to 32768, got {}",
                    spanned.get_ref()
                ),
            ),
        },
    };
    Some(Runtime {
        shards: shards?,
        driver: driver?,
        pin: pin?,
        uring_entries: uring_entries?,
    })
}

fn control(ctx: &mut Ctx<'_>, raw: Option<&RawControl>) -> Option<Control> {
    let socket = raw.and_then(|c| c.socket.as_ref());
    let socket = match ctx.optional(socket, "control.socket") {
        None => None,
        Some(None) => Some(PathBuf::from("/run/ringway/control.sock")),
        Some(Some(socket)) => ctx.path(socket, "control.socket".into()),
    };
    let drain_timeout = ctx.duration(
        raw.and_then(|c| c.drain_timeout.as_ref()),
        "control.drain_timeout".into(),
        Duration::from_secs(30),
    );
    let reload_timeout = ctx.duration(
        raw.and_then(|c| c.reload_timeout.as_ref()),
        "control.reload_timeout".into(),
        Duration::from_secs(5),
    );
    Some(Control {
        socket: socket?,
        drain_timeout: drain_timeout?,
        reload_timeout: reload_timeout?,
    })
}

fn metrics(ctx: &mut Ctx<'_>, raw: Option<&RawMetrics>) -> Option<Metrics> {
    let raw_interval = raw.and_then(|m| m.interval.as_ref());
    let mut interval = ctx.duration(
        raw_interval,
        "metrics.interval".into(),
        Duration::from_secs(1),
    );
    if let (Some(short), Some(Typed::Ok(at))) = (interval, raw_interval) {
        if short < MIN_METRICS_INTERVAL {
            let message = format!("must be at least 100ms, got \"{}\"", at.get_ref());
            interval = ctx.fail(at, "metrics.interval".into(), message);
        }
    }
    let interval_log = raw.and_then(|m| m.interval_log.as_ref());
    let interval_log = match ctx.optional(interval_log, "metrics.interval_log") {
        None => None,
        Some(None) => Some(None),
        Some(Some(log)) => ctx.path(log, "metrics.interval_log".into()).map(Some),
    };
    Some(Metrics {
        interval: interval?,
        interval_log: interval_log?,
    })
}

fn access_log(ctx: &mut Ctx<'_>, raw: &At<RawAccessLog>) -> Option<AccessLog> {
    let table = (raw, "access_log");
    let path = ctx.required(raw.get_ref().path.as_ref(), table, "path")?;
    let path = ctx.path(path, "access_log.path".into())?;
    Some(AccessLog { path })
}

fn admin(ctx: &mut Ctx<'_>, raw: &At<RawAdmin>, listeners: &[Listener]) -> Option<Admin> {
    let table = (raw, "admin");
    let raw_listen = ctx.required(raw.get_ref().listen.as_ref(), table, "listen")?;
    let listen = ctx.address(raw_listen, "admin.listen".into())?;
    if let Some(taken) = listeners.iter().find(|l| l.listen == listen) {
        let message = format!(
            "address {listen} is already used by listener \"{}\"",
            taken.name
        );
        return ctx.fail(raw_listen, "admin.listen".into(), message);
    }
    Some(Admin { listen })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::test_util::{errors, one_error, parse_ok, BASE};
    use crate::model::{AccessLog, DriverChoice, Metrics, Shards};

    #[test]
    fn runtime_defaults() {
        let config = parse_ok(BASE);
        assert_eq!(config.runtime.shards, Shards::Auto);
        assert_eq!(config.runtime.driver, DriverChoice::Auto);
        assert!(config.runtime.pin);
        assert_eq!(config.runtime.uring_entries, 1024);
        assert_eq!(
            config.control.socket.to_str(),
            Some("/run/ringway/control.sock")
        );
        assert!(config.admin.is_none());
    }

    #[test]
    fn runtime_values() {
        let src = format!(
            "{BASE}[runtime]\nshards = 4\ndriver = \"epoll\"\npin = false\nuring_entries = 4096\n\
             [control]\nsocket = \"/tmp/c.sock\"\n[admin]\nlisten = \"127.0.0.1:9901\"\n"
        );
        let config = parse_ok(&src);
        assert_eq!(config.runtime.shards, Shards::Count(4.try_into().unwrap()));
        assert_eq!(config.runtime.driver, DriverChoice::Epoll);
        assert!(!config.runtime.pin);
        assert_eq!(config.runtime.uring_entries, 4096);
        assert_eq!(config.control.socket.to_str(), Some("/tmp/c.sock"));
        assert_eq!(
            config.admin.unwrap().listen,
            "127.0.0.1:9901".parse().unwrap()
        );
        let io_uring = format!("{BASE}[runtime]\nshards = \"auto\"\ndriver = \"io_uring\"\n");
        assert_eq!(parse_ok(&io_uring).runtime.driver, DriverChoice::IoUring);
    }

    #[test]
    fn bad_shards() {
        let src = format!("{BASE}[runtime]\nshards = 0\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:10: runtime.shards: must be at least 1, got 0"
        );
        let src = format!("{BASE}[runtime]\nshards = \"many\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:10: runtime.shards: expected \"auto\" or a number of shards, got \"many\""
        );
        let src = format!("{BASE}[runtime]\nshards = true\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:10: runtime.shards: invalid type: boolean `true`, expected \"auto\" or a number of shards"
        );
    }

    #[test]
    fn bad_driver() {
        let src = format!("{BASE}[runtime]\ndriver = \"kqueue\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:10: runtime.driver: unknown driver \"kqueue\"; expected \"auto\", \"io_uring\" or \"epoll\""
        );
    }

    #[test]
    fn uring_entries_must_be_power_of_two_in_range() {
        for bad in ["0", "1", "1000", "65536", "-2"] {
            let src = format!("{BASE}[runtime]\nuring_entries = {bad}\n");
            assert_eq!(
                one_error(&src),
                format!("t.toml:5:17: runtime.uring_entries: must be a power of two from 2 to 32768, got {bad}")
            );
        }
        for good in [2, 32768] {
            let src = format!("{BASE}[runtime]\nuring_entries = {good}\n");
            assert_eq!(parse_ok(&src).runtime.uring_entries, good);
        }
    }

    #[test]
    fn empty_control_socket() {
        let src = format!("{BASE}[control]\nsocket = \"\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:10: control.socket: must not be empty"
        );
    }

    #[test]
    fn control_metrics_and_access_log_defaults() {
        let defaults = Metrics {
            interval: Duration::from_secs(1),
            interval_log: None,
        };
        let config = parse_ok(BASE);
        assert_eq!(config.control.drain_timeout, Duration::from_secs(30));
        assert_eq!(config.control.reload_timeout, Duration::from_secs(5));
        assert_eq!(config.metrics, defaults);
        assert_eq!(config.access_log, None);
        assert_eq!(config.source_text, BASE);
        // Tables that set none of their keys get the same defaults.
        let config = parse_ok(&format!("{BASE}[control]\n[metrics]\n"));
        assert_eq!(config.control.drain_timeout, Duration::from_secs(30));
        assert_eq!(config.control.reload_timeout, Duration::from_secs(5));
        assert_eq!(config.metrics, defaults);
    }

    #[test]
    fn control_metrics_and_access_log_values() {
        let src = format!(
            "{BASE}[control]\ndrain_timeout = \"1m\"\nreload_timeout = \"500ms\"\n\
             [metrics]\ninterval = \"100ms\"\ninterval_log = \"/var/log/ringway/latency.hlog\"\n\
             [access_log]\npath = \"/var/log/ringway/access.log\"\n"
        );
        let config = parse_ok(&src);
        assert_eq!(config.control.drain_timeout, Duration::from_secs(60));
        assert_eq!(config.control.reload_timeout, Duration::from_millis(500));
        assert_eq!(
            config.metrics,
            Metrics {
                interval: Duration::from_millis(100),
                interval_log: Some(PathBuf::from("/var/log/ringway/latency.hlog")),
            }
        );
        assert_eq!(
            config.access_log,
            Some(AccessLog {
                path: PathBuf::from("/var/log/ringway/access.log"),
            })
        );
        assert_eq!(config.source_text, src);
        let config = parse_ok(&format!("access_log.path = \"a.log\"\n{BASE}"));
        assert_eq!(config.access_log.unwrap().path, PathBuf::from("a.log"));
    }

    #[test]
    fn bad_control_timeouts() {
        let src = format!("{BASE}[control]\ndrain_timeout = \"0s\"\nreload_timeout = 5\n");
        assert_eq!(
            errors(&src),
            [
                "t.toml:5:17: control.drain_timeout: must be greater than zero",
                "t.toml:6:18: control.reload_timeout: invalid type: integer `5`, expected a string",
            ]
        );
        let src = format!("{BASE}[control]\nsocket = \"\"\nreload_timeout = \"5\"\n");
        assert_eq!(
            errors(&src),
            [
                "t.toml:5:10: control.socket: must not be empty",
                "t.toml:6:18: control.reload_timeout: \"5\" has no unit; write it with ms, s, m or h, such as \"5s\"",
            ]
        );
    }

    #[test]
    fn metrics_interval_is_at_least_100ms() {
        for bad in ["99ms", "0.05s"] {
            let src = format!("{BASE}[metrics]\ninterval = \"{bad}\"\n");
            assert_eq!(
                one_error(&src),
                format!("t.toml:5:12: metrics.interval: must be at least 100ms, got \"{bad}\"")
            );
        }
        let src = format!("{BASE}[metrics]\ninterval = \"1 s\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:12: metrics.interval: unknown duration unit \" s\"; use ms, s, m or h"
        );
        let src = format!("{BASE}[metrics]\ninterval = 1\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:12: metrics.interval: invalid type: integer `1`, expected a string"
        );
    }

    #[test]
    fn log_paths_must_not_be_empty() {
        let src = format!("{BASE}[metrics]\ninterval_log = \"\"\n[access_log]\npath = \"\"\n");
        assert_eq!(
            errors(&src),
            [
                "t.toml:5:16: metrics.interval_log: must not be empty",
                "t.toml:7:8: access_log.path: must not be empty",
            ]
        );
        let src = format!("access_log.path = \"\"\n{BASE}");
        assert_eq!(
            one_error(&src),
            "t.toml:1:19: access_log.path: must not be empty"
        );
        let src = format!("{BASE}[metrics]\ninterval_log = false\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:16: metrics.interval_log: invalid type: boolean `false`, expected a string"
        );
    }

    #[test]
    fn access_log_needs_a_path() {
        let src = format!("{BASE}[access_log]\n");
        assert_eq!(
            one_error(&src),
            "t.toml:4:1: access_log: missing field `path`"
        );
        let src = format!("{BASE}[access_log]\npath = 7\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:8: access_log.path: invalid type: integer `7`, expected a string"
        );
    }

    #[test]
    fn unknown_keys_in_control_metrics_and_access_log() {
        let src = format!(
            "{BASE}[metrics]\nintervals = \"1s\"\n[access_log]\npath = \"a.log\"\n\
             format = \"json\"\n[control]\ndrain = \"1s\"\n"
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:5:1: metrics.intervals: unknown field `intervals`, expected `interval` or \
                 `interval_log`",
                "t.toml:8:1: access_log.format: unknown field `format`, expected `path`",
                "t.toml:10:1: control.drain: unknown field `drain`, expected one of `socket`, \
                 `drain_timeout`, `reload_timeout`",
            ]
        );
    }

    #[test]
    fn a_value_where_the_table_belongs_is_reported_alone() {
        assert_eq!(
            one_error(&format!("metrics = \"1s\"\n{BASE}")),
            "t.toml:1:11: metrics: invalid type: string \"1s\", expected a table of metrics settings"
        );
        assert_eq!(
            one_error(&format!("access_log = \"a.log\"\n{BASE}")),
            "t.toml:1:14: access_log: invalid type: string \"a.log\", expected a table with the \
             access log path"
        );
        assert_eq!(
            one_error(&format!("control = 1\n{BASE}")),
            "t.toml:1:11: control: invalid type: integer `1`, expected a table of control settings"
        );
    }

    #[test]
    fn admin_listen_must_be_free() {
        let src = format!("{BASE}[admin]\nlisten = \"127.0.0.1:8080\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:10: admin.listen: address 127.0.0.1:8080 is already used by listener \"l\""
        );
        let src = format!("{BASE}[admin]\nlisten = \"nowhere\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:5:10: admin.listen: \"nowhere\" is not an address; expected ip:port or host:port"
        );
        let src = format!("{BASE}[admin]\n");
        assert_eq!(one_error(&src), "t.toml:4:1: admin: missing field `listen`");
    }

    #[test]
    fn errors_come_in_file_order() {
        let src = "[[routes]]\nname = \"r\"\nupstream = \"missing\"\n\n\
                   [runtime]\ndriver = \"x\"\nuring_entries = 3\n";
        assert_eq!(
            errors(src),
            [
                "t.toml:1:1: listeners: at least one [[listeners]] table is required",
                "t.toml:3:12: routes[0].upstream: no upstream named \"missing\"",
                "t.toml:6:10: runtime.driver: unknown driver \"x\"; expected \"auto\", \"io_uring\" or \"epoll\"",
                "t.toml:7:17: runtime.uring_entries: must be a power of two from 2 to 32768, got 3",
            ]
        );
    }
}
