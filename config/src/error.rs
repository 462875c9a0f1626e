//! Config errors: each names file, 1-based line and column, the dotted key path and what is
//! wrong, and displays as `file:line:column: key: message`.

use std::fmt;

use serde_path_to_error::Segment;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {key}: {message}")]
pub struct ConfigError {
    /// The file as the caller named it (`<default>` for the bundled config).
    pub file: String,
    /// 1-based line of the offending value.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted key path such as `routes[2].upstream`; `(syntax)` for TOML syntax errors and
    /// `(file)` when the file cannot be read.
    pub key: String,
    /// What is wrong, on one line.
    pub message: String,
}

/// Every problem found in one config file, in file order. Never empty when returned as an
/// error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl ConfigError {
    /// An error at byte `offset` of the source that `lines` indexes.
    pub(crate) fn at(
        file: &str,
        lines: &Lines<'_>,
        offset: usize,
        key: String,
        message: String,
    ) -> Self {
        let (line, column) = lines.position(offset);
        ConfigError {
            file: file.to_owned(),
            line,
            column,
            key,
            message: one_line(&message),
        }
    }

    /// A TOML syntax error: the file could not be parsed at all.
    pub(crate) fn syntax(file: &str, src: &str, error: &toml_edit::TomlError) -> Self {
        let offset = error.span().map_or(0, |span| span.start);
        let mut message = error.message().trim().to_owned();
        if message.is_empty() {
            // toml_edit names no cause for some faults, such as a control character in a
            // comment; the character at the position is the cause.
            message = match src.get(offset..).and_then(|rest| rest.chars().next()) {
                Some(c) if c.is_control() => {
                    format!(
                        "control character U+{:04X} is not allowed here",
                        u32::from(c)
                    )
                }
                Some(c) => format!("unexpected {c:?}"),
                None => "unexpected end of file".to_owned(),
            };
        }
        ConfigError::at(
            file,
            &Lines::new(src),
            offset,
            "(syntax)".to_owned(),
            message,
        )
    }

    /// The error deserialisation stopped at, with the key path serde_path_to_error tracked.
    pub(crate) fn from_serde(
        file: &str,
        src: &str,
        error: &serde_path_to_error::Error<toml_edit::de::Error>,
    ) -> Self {
        let offset = error.inner().span().map_or(0, |span| span.start);
        let key = key_path(error.path());
        let message = error.inner().message().to_owned();
        ConfigError::at(file, &Lines::new(src), offset, key, message)
    }
}

/// Renders a serde path as `routes[2].respond.status`, leaving out the private fields
/// through which `toml::Spanned` deserialises and map keys the tracker could not name.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned_private") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    if out.is_empty() {
        out.push_str("(syntax)");
    }
    out
}

/// The start of every line of a source, built once per file so that each error's position
/// costs a binary search and a count within its own line: positioning every error stays
/// linear in the file's size however many errors (or spans) a file has.
pub(crate) struct Lines<'s> {
    src: &'s str,
    /// Byte offset of each line's first character; `starts[0]` is 0.
    starts: Vec<usize>,
}

impl<'s> Lines<'s> {
    pub(crate) fn new(src: &'s str) -> Lines<'s> {
        let mut starts = Vec::with_capacity(src.len() / 32 + 1);
        starts.push(0);
        starts.extend(
            src.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Lines { src, starts }
    }

    /// 1-based line and column (in characters) of byte `offset`; offsets past the end or
    /// inside a character are clamped, so any span is safe.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.src.len());
        while !self.src.is_char_boundary(offset) {
            offset -= 1;
        }
        // The last line starting at or before `offset`.
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = self.src[start..offset].chars().count() + 1;
        (line, column)
    }

    /// 1-based line of byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }
}

/// toml's messages sometimes span lines; an error is one line of output.
fn one_line(message: &str) -> String {
    message
        .trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_column(src: &str, offset: usize) -> (usize, usize) {
        Lines::new(src).position(offset)
    }

    #[test]
    fn line_column_is_one_based_and_counts_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 4), (1, 5));
        assert_eq!(line_column(src, 6), (2, 1));
        // "bé = " is 6 bytes but 5 characters; the value starts at column 6.
        assert_eq!(line_column(src, 12), (2, 6));
    }

    #[test]
    fn line_column_clamps_offsets() {
        // Every offset of a multi-line source with multi-byte characters agrees with a scan
        // from the start.
        let src = "ab\né\n\nxyz é\n";
        for offset in 0..=src.len() + 2 {
            let mut at = offset.min(src.len());
            while !src.is_char_boundary(at) {
                at -= 1;
            }
            let before = &src[..at];
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[start..].chars().count() + 1;
            assert_eq!(line_column(src, offset), (line, column), "offset {offset}");
        }
        let src = "é\n";
        assert_eq!(line_column(src, 1), (1, 1));
        assert_eq!(line_column(src, 99), (2, 1));
        assert_eq!(line_column("", 5), (1, 1));
    }

    #[test]
    fn displays_file_line_column_key_message() {
        let error = ConfigError::at(
            "gw.toml",
            &Lines::new("x\ny = 1"),
            2,
            "routes[2].upstream".into(),
            "no upstream named \"users\"".into(),
        );
        assert_eq!(
            error.to_string(),
            "gw.toml:2:1: routes[2].upstream: no upstream named \"users\""
        );
        let errors = ConfigErrors(vec![error.clone(), error]);
        assert_eq!(errors.to_string().lines().count(), 2);
    }

    #[test]
    fn a_control_character_in_a_comment_is_named() {
        // toml_edit's message for a control character in a comment is empty.
        for (src, want) in [
            (
                "# a\u{1}\n",
                "t.toml:1:4: (syntax): control character U+0001 is not allowed here",
            ),
            (
                "a = 1\n# x\0y\n",
                "t.toml:2:4: (syntax): control character U+0000 is not allowed here",
            ),
        ] {
            let errors = crate::parse(src, "t.toml").expect_err("a syntax error");
            assert_eq!(errors.to_string(), want);
        }
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        assert_eq!(
            one_line("invalid string\nexpected `\"`\n"),
            "invalid string; expected `\"`"
        );
    }
}
