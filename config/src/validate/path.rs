//! Route path keys: `path_exact`, `path_prefix` or `path_regex`, at most one of them.

use regex::Regex;
use toml::Spanned;

use super::Ctx;
use crate::model::PathMatch;
use crate::raw::{RawRoute, Typed};

pub(super) fn path(ctx: &mut Ctx<'_>, prefix: &str, r: &RawRoute) -> Option<PathMatch> {
    let given: Vec<(&str, &Typed<String>)> = [
        ("path_exact", &r.path_exact),
        ("path_prefix", &r.path_prefix),
        ("path_regex", &r.path_regex),
    ]
    .into_iter()
    .filter_map(|(field, value)| Some((field, value.as_ref()?)))
    .collect();
    for (field, value) in given.iter().skip(1) {
        let message = format!(
            "set only one of path_exact, path_prefix and path_regex; {} is set too",
            given[0].0
        );
        ctx.error_near(value.span(), format!("{prefix}.{field}"), message);
    }
    let checked: Vec<Option<PathMatch>> = given
        .iter()
        .map(|&(field, value)| {
            let key = format!("{prefix}.{field}");
            let value = ctx.typed(value, &key)?;
            match field {
                "path_exact" => literal_path(ctx, value, key).map(PathMatch::Exact),
                "path_prefix" => literal_path(ctx, value, key).map(PathMatch::Prefix),
                _ => path_regex(ctx, value, key).map(PathMatch::Regex),
            }
        })
        .collect();
    let mut checked = checked.into_iter();
    match (checked.next(), checked.next()) {
        (None, _) => Some(PathMatch::Any),
        (Some(only), None) => only,
        // Two or more path keys: reported above.
        (Some(_), Some(_)) => None,
    }
}

fn literal_path(ctx: &mut Ctx<'_>, raw: &Spanned<String>, key: String) -> Option<String> {
    let path = raw.get_ref();
    if !path.starts_with('/') {
        return ctx.fail(raw, key, format!("\"{path}\" must start with '/'"));
    }
    if path.contains(['?', '#']) {
        let message = "must not contain '?' or '#': paths are matched without the query";
        return ctx.fail(raw, key, message);
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return ctx.fail(raw, key, "must not contain spaces or control characters");
    }
    Some(path.clone())
}

/// Parses the pattern on its own first, so that a pattern such as `a)|(b` cannot escape the
/// anchoring group, then compiles it anchored as `^(?:...)$`; the running config's regex of
/// the same pattern is reused (compiling is most of the cost of a regex route).
fn path_regex(ctx: &mut Ctx<'_>, raw: &Spanned<String>, key: String) -> Option<Regex> {
    let why = match regex_syntax::Parser::new().parse(raw.get_ref()) {
        Err(error) => syntax_error(&error.to_string()),
        Ok(_) => {
            let anchored = format!("^(?:{})$", raw.get_ref());
            if let Some(regex) = ctx.running_regex(&anchored) {
                return Some(regex.clone());
            }
            match Regex::new(&anchored) {
                Ok(regex) => return Some(regex),
                Err(regex::Error::Syntax(text)) => syntax_error(&text),
                Err(other) => other.to_string(),
            }
        }
    };
    ctx.fail(raw, key, format!("invalid regex: {why}"))
}

/// The last line of a syntax error (the one that says what is wrong), without `error: `.
fn syntax_error(text: &str) -> String {
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

#[cfg(test)]
mod tests {
    use crate::model::{PathMatch, Route};
    use crate::validate::route::tests::with_route;
    use crate::validate::test_util::{errors, one_error, parse_ok};

    fn the_route(body: &str) -> Route {
        parse_ok(&with_route(body)).routes.remove(0)
    }

    #[test]
    fn paths() {
        let r = the_route("path_exact = \"/hello\"\nupstream = \"users\"\n");
        assert!(matches!(r.path, PathMatch::Exact(ref p) if p == "/hello"));
        let r = the_route("path_prefix = \"/users\"\nupstream = \"users\"\n");
        assert!(matches!(r.path, PathMatch::Prefix(ref p) if p == "/users"));
    }

    #[test]
    fn at_most_one_path_key() {
        let src = with_route("path_exact = \"/a\"\npath_prefix = \"/b\"\npath_regex = \"/c\"\nupstream = \"users\"\n");
        assert_eq!(
            errors(&src),
            [
                "t.toml:10:15: routes[0].path_prefix: set only one of path_exact, path_prefix and path_regex; path_exact is set too",
                "t.toml:11:14: routes[0].path_regex: set only one of path_exact, path_prefix and path_regex; path_exact is set too",
            ]
        );
    }

    #[test]
    fn paths_start_with_a_slash() {
        let src = with_route("path_exact = \"hello\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:14: routes[0].path_exact: \"hello\" must start with '/'"
        );
        let src = with_route("path_prefix = \"\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:15: routes[0].path_prefix: \"\" must start with '/'"
        );
        let src = with_route("path_exact = \"/a?b=1\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:14: routes[0].path_exact: must not contain '?' or '#': paths are matched without the query"
        );
        let src = with_route("path_prefix = \"/a b\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:15: routes[0].path_prefix: must not contain spaces or control characters"
        );
    }

    #[test]
    fn regex_is_anchored() {
        let r = the_route("path_regex = \"/orders/[0-9]+\"\nupstream = \"users\"\n");
        let PathMatch::Regex(regex) = r.path else {
            panic!("{:?}", r.path)
        };
        assert_eq!(regex.as_str(), "^(?:/orders/[0-9]+)$");
        assert!(regex.is_match("/orders/42"));
        assert!(!regex.is_match("/orders/42/items"));
        assert!(!regex.is_match("/v1/orders/42"));
    }

    #[test]
    fn regex_must_compile_on_its_own() {
        let src = with_route("path_regex = \"/orders/(\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:14: routes[0].path_regex: invalid regex: unclosed group"
        );
        // Wrapped in ^(?:...)$ this would compile, unanchored.
        let src = with_route("path_regex = \"/a)|(?:/b\"\nupstream = \"users\"\n");
        assert_eq!(
            one_error(&src),
            "t.toml:9:14: routes[0].path_regex: invalid regex: unopened group"
        );
    }
}
