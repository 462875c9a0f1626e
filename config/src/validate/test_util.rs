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

/// A folder of its own under the system's temporary folder, removed when dropped.
pub(crate) struct TempDir(std::path::PathBuf);

impl TempDir {
    /// `name` keeps tests that run at once apart; the process id keeps runs apart.
    pub(crate) fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("ringway-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes `contents` to `name` in this folder (making the folders on the way) and
    /// returns its path.
    pub(crate) fn write(&self, name: &str, contents: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
