//! Building a shard's runtime on the driver the config asks for.

use std::fmt;

use ringway_config::DriverChoice;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverKind {
    IoUring,
    Epoll,
}

impl DriverKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::IoUring => "io_uring",
            DriverKind::Epoll => "epoll",
        }
    }
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;
pub type LegacyRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>>;

pub enum Built {
    Uring(UringRuntime),
    /// With the reason io_uring was not used, when `auto` fell back.
    Legacy(LegacyRuntime, Option<String>),
}

pub fn build(choice: DriverChoice, entries: u32) -> Result<Built, (&'static str, std::io::Error)> {
    let legacy = || {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map_err(|e| ("epoll", e))
    };
    let uring = || {
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .with_entries(entries)
            .enable_timer()
            .build()
            .map_err(|e| ("io_uring", e))
    };
    match choice {
        DriverChoice::Epoll => legacy().map(|rt| Built::Legacy(rt, None)),
        DriverChoice::IoUring => uring().map(Built::Uring),
        DriverChoice::Auto => match uring() {
            Ok(rt) => Ok(Built::Uring(rt)),
            Err((_, why)) => legacy().map(|rt| Built::Legacy(rt, Some(why.to_string()))),
        },
    }
}

/// A runtime on the epoll driver with timers, for unit tests of shard-local primitives.
#[cfg(test)]
pub(crate) fn test_runtime() -> LegacyRuntime {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("a test runtime")
}
