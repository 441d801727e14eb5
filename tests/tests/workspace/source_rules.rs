//! Security rules read off the source itself, so a change that breaks one fails the build:
//!
//! - secrets are compared only in constant time: no `==` / `!=` touches a token, secret,
//!   signature, digest or MAC anywhere in the shipped code, and the functions that do compare
//!   them call `subtle::ConstantTimeEq::ct_eq`;
//! - SQL is built only with parameters: a string that holds SQL interpolates nothing but
//!   constants (column lists, channel names) and `&'static str` arguments (SQL text written in
//!   the code), the one exception being database names in `CREATE/DROP DATABASE`, which
//!   PostgreSQL cannot take as parameters.
//!
//! - crates depend on each other only as ARCHITECTURE.md draws it: no stage crate on another
//!   stage, no library (the control plane, webhooks, runtime, schemas) on a stage.
//!
//! Shipped code is every crate's `src/` outside `#[cfg(test)]`; test code may compare freely.

use std::path::{Path, PathBuf};

use gf_tests::workspace_root;
use syn::visit::Visit;

/// Words that mark an identifier as holding secret material.
const SECRET_WORDS: [&str; 5] = ["token", "secret", "signature", "digest", "mac"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/**/*.rs` of every workspace member.
fn shipped_sources() -> Vec<(PathBuf, syn::File)> {
    let root = workspace_root();
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut files = Vec::new();
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        rust_files(&root.join(member.as_str().unwrap()).join("src"), &mut files);
    }
    assert!(files.len() > 30, "found only {} source files", files.len());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            (path, file)
        })
        .collect()
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg")
                && a.meta
                    .require_list()
                    .is_ok_and(|l| l.tokens.to_string().contains("test")))
    })
}

/// Lowercase identifiers in an expression (not constants: `SECRET_CHARS` is a length).
fn identifiers(tokens: proc_macro2::TokenStream, out: &mut Vec<String>) {
    for tree in tokens {
        match tree {
            proc_macro2::TokenTree::Ident(i) => {
                let name = i.to_string();
                if name.chars().any(|c| c.is_lowercase()) {
                    out.push(name);
                }
            }
            proc_macro2::TokenTree::Group(g) => identifiers(g.stream(), out),
            _ => {}
        }
    }
}

fn names_a_secret(ident: &str) -> bool {
    let lower = ident.to_ascii_lowercase();
    // Stored scrypt hashes are PHC strings the database holds: comparing two of them reveals
    // nothing a caller controls. Ids and lookups are public halves.
    if lower.ends_with("_hash") || lower.ends_with("_id") || lower.contains("lookup") {
        return false;
    }
    lower.split('_').any(|word| {
        SECRET_WORDS
            .iter()
            .any(|s| word == *s || word == format!("{s}s"))
    })
}

#[derive(Default)]
struct Findings {
    file: String,
    plain_secret_compares: Vec<String>,
    sql_interpolations: Vec<String>,
    ct_eq_in: Vec<String>,
    current_fn: Vec<String>,
    /// Per enclosing function, its `&'static str` parameters.
    static_params: Vec<Vec<String>>,
}

impl Findings {
    fn enter(&mut self, sig: &syn::Signature) {
        self.current_fn.push(sig.ident.to_string());
        let statics = sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                syn::FnArg::Typed(t) => Some(t),
                syn::FnArg::Receiver(_) => None,
            })
            .filter(|t| quote::ToTokens::to_token_stream(&t.ty).to_string() == "& 'static str")
            .filter_map(|t| match &*t.pat {
                syn::Pat::Ident(i) => Some(i.ident.to_string()),
                _ => None,
            })
            .collect();
        self.static_params.push(statics);
    }

    fn leave(&mut self) {
        self.current_fn.pop();
        self.static_params.pop();
    }
}

impl<'ast> Visit<'ast> for Findings {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test_only(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if is_test_only(&f.attrs) {
            return;
        }
        self.enter(&f.sig);
        syn::visit::visit_item_fn(self, f);
        self.leave();
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.enter(&f.sig);
        syn::visit::visit_impl_item_fn(self, f);
        self.leave();
    }

    fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
        if matches!(e.op, syn::BinOp::Eq(_) | syn::BinOp::Ne(_)) {
            let mut names = Vec::new();
            for side in [&*e.left, &*e.right] {
                let tokens = quote::ToTokens::to_token_stream(side);
                // A length is not the secret.
                if !tokens.to_string().ends_with("len ()") {
                    identifiers(tokens, &mut names);
                }
            }
            if let Some(secret) = names.iter().find(|n| names_a_secret(n)) {
                let line = e.left.span_line();
                self.plain_secret_compares.push(format!(
                    "{}:{line} compares `{secret}` with ==/!=",
                    self.file
                ));
            }
        }
        syn::visit::visit_expr_binary(self, e);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        if m.method == "ct_eq" {
            self.ct_eq_in
                .push(self.current_fn.last().cloned().unwrap_or_default());
        }
        syn::visit::visit_expr_method_call(self, m);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        if m.path.is_ident("format") {
            let tokens: Vec<proc_macro2::TokenTree> = m.tokens.clone().into_iter().collect();
            if let Some(proc_macro2::TokenTree::Literal(lit)) = tokens.first()
                && let Ok(text) = syn::parse_str::<syn::LitStr>(&lit.to_string())
            {
                let statics = self.static_params.last().cloned().unwrap_or_default();
                check_sql(
                    &text.value(),
                    &statics,
                    &self.file,
                    &mut self.sql_interpolations,
                );
            }
        }
        syn::visit::visit_macro(self, m);
    }
}

trait SpanLine {
    fn span_line(&self) -> usize;
}

impl SpanLine for syn::Expr {
    fn span_line(&self) -> usize {
        syn::spanned::Spanned::span(self).start().line
    }
}

const SQL_STARTS: [&str; 9] = [
    "SELECT ", "INSERT ", "UPDATE ", "DELETE ", "CREATE ", "DROP ", "ALTER ", "LISTEN ", "WITH ",
];

/// A format string holding SQL may interpolate constants and `statics` only (and database names).
fn check_sql(text: &str, statics: &[String], file: &str, out: &mut Vec<String>) {
    let trimmed = text.trim_start();
    if !SQL_STARTS.iter().any(|s| trimmed.starts_with(s)) {
        return;
    }
    let database_statement =
        trimmed.starts_with("CREATE DATABASE ") || trimmed.starts_with("DROP DATABASE ");
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if rest.starts_with('{') {
            rest = &rest[1..];
            continue;
        }
        let close = rest.find('}').unwrap_or(rest.len());
        let name = rest[..close].split(':').next().unwrap_or("");
        let constant = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !constant && !database_statement && !statics.iter().any(|s| s == name) {
            out.push(format!("{file}: SQL interpolates `{{{name}}}`: {text:?}"));
        }
        rest = &rest[close..];
    }
}

fn findings() -> Vec<Findings> {
    let root = workspace_root();
    shipped_sources()
        .into_iter()
        .map(|(path, file)| {
            let mut f = Findings {
                file: path.strip_prefix(&root).unwrap().display().to_string(),
                ..Findings::default()
            };
            f.visit_file(&file);
            f
        })
        .collect()
}

#[test]
fn secrets_are_never_compared_with_eq() {
    let found: Vec<String> = findings()
        .into_iter()
        .flat_map(|f| f.plain_secret_compares)
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_secret_comparisons_are_subtles() {
    let findings = findings();
    let ct_eq = |file: &str| -> Vec<String> {
        findings
            .iter()
            .find(|f| f.file == file)
            .unwrap_or_else(|| panic!("{file} is gone; update this test"))
            .ct_eq_in
            .clone()
    };
    // The receiver's token and shared-secret digests, the webhook signatures.
    assert_eq!(ct_eq("receiver/src/auth/mod.rs"), ["same"]);
    assert_eq!(ct_eq("webhooks/src/signing.rs"), ["verify"]);
    // Both files take `ct_eq` from `subtle` and from nowhere else.
    for file in ["receiver/src/auth/mod.rs", "webhooks/src/signing.rs"] {
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        assert!(
            text.contains("use subtle::ConstantTimeEq;"),
            "{file} must import subtle"
        );
        assert!(!text.contains("fn ct_eq"), "{file} defines its own ct_eq");
    }
}

#[test]
fn sql_is_built_only_with_parameters() {
    let found: Vec<String> = findings()
        .into_iter()
        .flat_map(|f| f.sql_interpolations)
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_rules_catch_what_they_are_for() {
    let code = r#"
        fn check(token: &str, expected_token: &str) -> bool { token == expected_token }
        fn query(id: &str) -> String { format!("SELECT * FROM t WHERE id = '{id}'") }
        fn update(set: &'static str) -> String { format!("UPDATE t SET {set} WHERE id = $1") }
        fn fine(a: &[u8], b: &[u8], row: &Row) -> bool {
            let _ = format!("SELECT {COLUMNS} FROM t WHERE id = $1");
            a.len() == SECRET_CHARS && row.token_hash == row.old_hash && a.ct_eq(b).into()
        }
        #[cfg(test)]
        mod tests { fn t(secret: &str) -> bool { secret == "x" } }
    "#;
    let mut f = Findings {
        file: "example.rs".into(),
        ..Findings::default()
    };
    f.visit_file(&syn::parse_file(code).unwrap());
    assert_eq!(
        f.plain_secret_compares.len(),
        1,
        "{:?}",
        f.plain_secret_compares
    );
    assert_eq!(f.sql_interpolations.len(), 1, "{:?}", f.sql_interpolations);
    assert_eq!(f.ct_eq_in, ["fine"]);
}

/// The workspace crates a crate's `[dependencies]` may name, as ARCHITECTURE.md draws them.
/// A crate missing here fails the test: place it in the picture first.
const MAY_DEPEND_ON: &[(&str, &[&str])] = &[
    ("gf-schemas", &[]),
    ("gf-localkafka", &[]),
    ("gf-runtime", &["gf-schemas"]),
    ("gf-webhooks", &["gf-runtime", "gf-schemas"]),
    ("gf-control", &["gf-runtime", "gf-schemas", "gf-webhooks"]),
    (
        "gf-console",
        &["gf-runtime", "gf-schemas", "gf-control", "gf-webhooks"],
    ),
    // The stages: libraries only, never another stage.
    ("gf-receiver", &["gf-runtime", "gf-schemas", "gf-control"]),
    ("gf-normalizer", &["gf-runtime", "gf-schemas"]),
    ("gf-attributor", &["gf-runtime", "gf-schemas"]),
    ("gf-notifier", &["gf-runtime", "gf-schemas", "gf-webhooks"]),
];
/// The stage crates: only the `gf` binary (and test or tool crates) may depend on them.
const STAGES: [&str; 4] = [
    "gf-receiver",
    "gf-normalizer",
    "gf-attributor",
    "gf-notifier",
];
/// Crates that assemble everything: the operator's binary, the test support, the dev tool.
const ASSEMBLERS: [&str; 3] = ["gf", "gf-tests", "xtask"];

/// Every workspace member's package name and the `gf-*` crates its `[dependencies]` name.
fn workspace_dependencies() -> Vec<(String, Vec<String>)> {
    let root = workspace_root();
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut out = Vec::new();
    for member in manifest["workspace"]["members"].as_array().unwrap() {
        let path = root.join(member.as_str().unwrap()).join("Cargo.toml");
        let crate_manifest: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        let name = crate_manifest["package"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        let deps = crate_manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| {
                d.keys()
                    .filter(|k| k.starts_with("gf-") || k.as_str() == "gf")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.push((name, deps));
    }
    out
}

/// Which dependencies of `crate_name` the rules forbid (empty when it keeps to them).
fn forbidden_dependencies(crate_name: &str, deps: &[String]) -> Vec<String> {
    if ASSEMBLERS.contains(&crate_name) {
        return Vec::new();
    }
    let Some((_, allowed)) = MAY_DEPEND_ON.iter().find(|(name, _)| *name == crate_name) else {
        return vec![format!("{crate_name} is not in MAY_DEPEND_ON")];
    };
    deps.iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .map(|d| format!("{crate_name} depends on {d}"))
        .collect()
}

#[test]
fn crates_depend_only_as_the_architecture_draws() {
    let found: Vec<String> = workspace_dependencies()
        .iter()
        .flat_map(|(name, deps)| forbidden_dependencies(name, deps))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
    // The table itself keeps stages apart and libraries off the stages.
    for (name, allowed) in MAY_DEPEND_ON {
        for dep in *allowed {
            assert!(
                !STAGES.contains(dep),
                "{name} may not depend on the stage {dep}"
            );
        }
    }
}

#[test]
fn the_dependency_rule_catches_what_it_forbids() {
    let deps = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        forbidden_dependencies("gf-control", &deps(&["gf-runtime", "gf-notifier"])),
        ["gf-control depends on gf-notifier"]
    );
    assert_eq!(
        forbidden_dependencies("gf-attributor", &deps(&["gf-normalizer"])),
        ["gf-attributor depends on gf-normalizer"]
    );
    assert!(!forbidden_dependencies("gf-newstage", &[]).is_empty());
    assert!(forbidden_dependencies("gf", &deps(&["gf-notifier"])).is_empty());
    assert!(forbidden_dependencies("gf-notifier", &deps(&["gf-webhooks"])).is_empty());
}

/// Every file and folder ARCHITECTURE.md sends a reader to exists, so the map cannot drift from
/// the tree.
#[test]
fn the_architecture_map_names_only_paths_that_exist() {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut checked = 0;
    for (i, span) in text.split('`').enumerate() {
        // Odd pieces are inside backticks.
        let looks_like_path = i % 2 == 1
            && span.contains('/')
            && !span.contains(' ')
            && !span.contains('<')
            && !span.contains('*')
            && (span.ends_with(".rs") || span.ends_with('/') || span.ends_with(".md"));
        if looks_like_path {
            assert!(
                root.join(span).exists(),
                "ARCHITECTURE.md names {span}, which does not exist"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} paths found");
}
