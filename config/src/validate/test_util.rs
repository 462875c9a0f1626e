//! Helpers for the validation tests: parse a snippet as `t.toml`, get its error lines.

use crate::model::Config;

/// A valid minimal config (three lines); tests append tables after it, from line 4.
pub(crate) const BASE: &str = "[[listeners]]\nname = \"l\"\nlisten = \"127.0.0.1:8080\"\n";

pub(crate) fn parse_ok(src: &str) -> Config {
    match crate::parse(src, "t.toml") {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}\n---\n{src}"),
    }
}

/// Every error line, in order.
pub(crate) fn errors(src: &str) -> Vec<String> {
    match crate::parse(src, "t.toml") {
        Ok(_) => panic!("expected errors, the config is valid:\n{src}"),
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

/// The only error line.
pub(crate) fn one_error(src: &str) -> String {
    let mut errors = errors(src);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.remove(0)
}
