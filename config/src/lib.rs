//! Ringway's configuration: the TOML schema users write, its validation, and the validated,
//! immutable [`Config`] that every epoch runs.
//!
//! The path is the same at start-up and on reload: TOML text is parsed once, deserialised
//! into private `Raw*` types (collecting unknown keys), then validated into the types of
//! [`model`], which cannot hold an invalid state (durations are [`Duration`](std::time::Duration)s,
//! addresses [`SocketAddr`](std::net::SocketAddr)s, regexes compiled, references resolved).
//! Host names in addresses are resolved here, while loading (endpoint names with
//! `[resolver]`, see [`resolve`], which the control side uses again to follow names while a
//! config runs), and the files a config
//! names (TLS certificates, keys, CA bundles) are read and checked here too, relative paths
//! from the config file's folder: a reload re-reads them.
//!
//! # Threading
//!
//! None. Loading is plain synchronous code, run by the control thread; a [`Config`] is
//! immutable once built, so it can be shared (inside an epoch's `Arc`) with every shard.
//!
//! # Errors
//!
//! Nothing here panics on any input. [`parse`] and [`load`] return [`ConfigErrors`]: one
//! [`ConfigError`] per problem, each naming file, line, column and key path, displayed as
//! `file:line:column: key: message`, in file order. Every problem is reported in one go:
//! unknown keys, values of the wrong type, missing keys, bad values and broken references.
//! Only two things stop reading early: a TOML syntax error (reported alone), and a value of
//! the wrong shape where a table is needed, such as `respond = "hello"` (reported with the
//! unknown keys met before it).

#![forbid(unsafe_code)]

mod error;
pub mod model;
mod raw;
mod read;
pub mod resolve;
mod units;
mod validate;

use std::path::Path;

pub use error::{ConfigError, ConfigErrors};
pub use model::*;
/// The subject of a DER certificate as RFC 4514 text, as [`CertKey::subject`] has it.
pub use validate::certificate_subject;

/// The bundled configuration, served when no file is given: one listener on
/// 127.0.0.1:8080 answering every request with a short page.
pub const DEFAULT_TOML: &str = include_str!("../default.toml");

/// Parses and validates `src`; `file` names it in errors and becomes [`Config::source`],
/// `src` itself becomes [`Config::source_text`].
pub fn parse(src: &str, file: &str) -> Result<Config, ConfigErrors> {
    let read = read::read(src, file)?;
    validate::validate(read, file, src, None)
}

/// Reads, parses and validates the file at `path`. A file that cannot be read (or is not
/// UTF-8) gives one error, at line 1, column 1, with key `(file)`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_replacing(path, None)
}

/// [`load`] for a reload of `running`: the result is the same, but what `running` already
/// compiled (route regexes) is reused where the file asks for the same, so that a reload of
/// a large config costs less than its first load.
pub fn load_replacing(path: &Path, running: Option<&Config>) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => {
            let read = read::read(&src, &file)?;
            validate::validate(read, &file, &src, running)
        }
        Err(error) => Err(ConfigError {
            file,
            line: 1,
            column: 1,
            key: "(file)".to_owned(),
            message: format!("cannot read the file: {error}"),
        }
        .into()),
    }
}

/// The bundled configuration ([`DEFAULT_TOML`]), parsed with the file name `<default>`.
pub fn default_config() -> Config {
    match parse(DEFAULT_TOML, "<default>") {
        Ok(config) => config,
        // Cannot happen: a unit test parses the bundled file.
        Err(errors) => panic!("the bundled default.toml is invalid:\n{errors}"),
    }
}

#[cfg(test)]
mod tests;
