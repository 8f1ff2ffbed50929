//! The module graph, held: each module of the library and of the command imports only from
//! its own layer and the ones below it, no two modules of one layer import each other
//! round in a circle, and no two files of one module do (`store/refresh.rs` and
//! `store/shared.rs`, say: a path lands in the file of its longest prefix that is a
//! module). The order is declared here, once (`LIBRARY`, `COMMAND`); `src/lib.rs`'s module
//! map and `src/bin/logto-m2m/main.rs` say the same in words.
//!
//! An import is any `crate::` path in a module's code (in a `use` or anywhere else, groups
//! like `crate::{a, b::{c}}` included), a name the crate root re-exports counting as its
//! module, and any `super::` path that leaves the file's top module. Comments, string and
//! char literals, and test code (every item under `#[cfg(test)]`, wherever it stands, and
//! files declared only for tests) are left out. A file in a folder (`store/local.rs`)
//! belongs to the layer of its top module (`store`). The crate root (`lib.rs`, `main.rs`)
//! is above every layer: a module that names one of its own items imports from above.
//!
//! The checker reads files from a map of paths to texts, so that the tests below can show
//! it failing on small made-up crates and on the real tree with one import added.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The library's layers, bottom first: a module may import from its own layer and the
/// ones below, never from above.
const LIBRARY: &[&[&str]] = &[
    // Text readers, encoders, time and hash helpers, server text made safe, sealing, roots.
    &["text", "encode", "time", "hash", "sanitize", "seal", "tls"],
    // The error, URLs, secrets, and how requests reach a server.
    &["error", "url", "secret", "transport"],
    &["config"],
    // What to ask for and what came back: data, no I/O.
    &["claims", "token", "subject", "request"],
    // The token response parser, the cache interface and its entries.
    &["response", "cache"],
    // The exchange with the token endpoint (token exchange under it), and its advice.
    &["advice", "exchange"],
    // The shared caches.
    &["token_file", "redis"],
    &["store"],
    // What uses a store or stands apart on top: the API calls, the verifier, the fuzz and
    // bench entry points.
    &["api", "verify", "internal"],
];

/// The command's layers (`src/bin/logto-m2m/`), bottom first.
const COMMAND: &[&[&str]] = &[
    // What a run prints and how it ends; the readers of a list's pages.
    &["output", "json_array", "link"],
    // The `LOGTO_*` variables, with the flags that stand in for them.
    &["vars"],
    // The flag table, the help texts and formats, the subject flags.
    &["help", "subject", "flags"],
    // What a run sets up; the input it reads.
    &["setup", "input"],
    // The commands.
    &["token", "inspect", "verify", "paginate", "call"],
];

#[test]
fn modules_import_only_from_layers_below() {
    let tree = Tree::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let problems = check(&tree);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The real tree with one import added where it must not be: `error.rs` importing the
/// store, in a `use` group written across lines, after a test-only field; the command's
/// `output.rs` importing `call`.
#[test]
fn the_real_tree_with_an_upward_import_fails_the_layers() {
    let mut tree = Tree::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let error = tree.text_mut("error.rs");
    let at = error.find("#[cfg(test)]").unwrap_or(error.len());
    error.insert_str(
        at,
        "struct Probe {\n    #[cfg(test)]\n    a: crate::store::TokenStore,\n    b: u8,\n}\n\
         use crate::{\n    sanitize::sanitize,\n    store::{TokenStore},\n};\n",
    );
    let output = tree.text_mut("bin/logto-m2m/output.rs");
    output.push_str("\nfn probe(_: &crate::call::Caller) {}\n");
    let problems = check(&tree);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].starts_with("library: error imports store"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("command: output imports call"),
        "{problems:#?}"
    );
}

/// Two files of one module that import each other round: the store's refresh naming its
/// shared-cache file, which builds on the refresh (a circle the layers of top modules
/// can't see), written as a nested `super::` group.
#[test]
fn the_real_tree_with_a_circle_inside_the_store_fails() {
    let mut tree = Tree::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let refresh = tree.text_mut("store/refresh.rs");
    let at = refresh.find("use super::*;").unwrap();
    refresh.insert_str(
        at,
        "use super::{\n    margin_for,\n    shared::{self},\n};\n",
    );
    assert_eq!(
        check(&tree),
        [
            "library: the files store/refresh.rs, store/shared.rs import each other in a \
             circle, within one module"
        ]
    );
}

/// What counts as an import and what does not, on made-up crates.
#[test]
fn the_checker_reads_code_not_comments_strings_or_tests() {
    const LAYERS: &[&[&str]] = &[&["text"], &["error"], &["store"]];
    let lib = "mod error;\nmod store;\nmod text;\n#[cfg(test)]\nmod tests;\n\
               pub use error::Error;\npub use store::{Other, TokenStore};\n";
    // Everything that looks like an import of the store but is not one.
    let clean = r##"
//! Not [`TokenStore`](crate::store::TokenStore) either.
use crate::text::{self, Leaf};
/* crate::store /* nested */ crate::store */
pub struct Error {
    #[cfg(test)]
    hooks: crate::store::Hooks,
    #[cfg(test)]
    #[allow(dead_code)]
    more: [crate::store::X; 2],
    kind: u8,
}
const A: &str = "crate::store::TokenStore";
const B: &str = r#"crate::store "quoted" crate::store"#;
const C: char = '{';
const D: char = '\'';
fn f<'a>(x: &'a str) -> &'a str { let _ = b"crate::store"; x }
#[cfg(test)]
fn helper() { crate::store::x(); }
#[cfg(test)]
mod test {
    use crate::store::TokenStore;
    use super::super::store;
}
"##;
    let crate_with = |error: &str| {
        let mut files = BTreeMap::new();
        files.insert(PathBuf::from("lib.rs"), lib.to_owned());
        files.insert(PathBuf::from("text.rs"), "pub struct Leaf;\n".to_owned());
        files.insert(PathBuf::from("store.rs"), "use crate::Error;\n".to_owned());
        files.insert(PathBuf::from("tests.rs"), "use crate::store;\n".to_owned());
        files.insert(PathBuf::from("error.rs"), error.to_owned());
        Tree { files }
    };
    let problems = |error: &str| check_crate(&crate_with(error), "lib.rs", "x", LAYERS);
    assert_eq!(problems(clean), Vec::<String>::new());

    // Each of these is an import of the store from below it, however it is written.
    for import in [
        "use crate::store::TokenStore;",
        "use crate::{text::Leaf, store::{self, Other}};",
        "use crate::{\n    text,\n    store,\n};",
        "fn g() { crate::store::x(); }",
        "fn g(_: crate::TokenStore) {}",
        "use crate::Other;",
    ] {
        let found = problems(&format!("{clean}{import}\n"));
        assert_eq!(
            found,
            ["x: error imports store, a layer above it"],
            "{import}"
        );
    }
    // From a file in a folder: the layer of its top module, and `super::` that leaves it.
    let mut tree = crate_with("mod detail;\n");
    tree.files.insert(
        PathBuf::from("error/detail.rs"),
        "use super::super::store::TokenStore;\nuse super::Error;\n".into(),
    );
    assert_eq!(
        check_crate(&tree, "lib.rs", "x", LAYERS),
        ["x: error imports store, a layer above it"]
    );
    // An item of the crate root itself is above every layer.
    let mut tree = crate_with("use crate::ROOT;\n");
    tree.text_mut("lib.rs")
        .push_str("pub const ROOT: u8 = 1;\n");
    assert_eq!(
        check_crate(&tree, "lib.rs", "x", LAYERS),
        ["x: error imports ROOT, an item of the crate root, above every layer"]
    );
    // A module in no layer, and a circle inside one layer.
    let mut tree = crate_with("use crate::text::Leaf;\n");
    tree.text_mut("lib.rs").push_str("mod stray;\n");
    tree.files.insert(PathBuf::from("stray.rs"), String::new());
    tree.files.insert(
        PathBuf::from("text.rs"),
        "use crate::error::Error;\n".into(),
    );
    let circle: &[&[&str]] = &[&["text", "error"], &["store", "gone"]];
    assert_eq!(
        check_crate(&tree, "lib.rs", "x", circle),
        [
            "x: stray is in no layer",
            "x: gone is in a layer but is no module",
            "x: error, text import each other in a circle, within one layer",
        ]
    );
}

/// The problems of the library and the command, each a line.
fn check(tree: &Tree) -> Vec<String> {
    let mut problems = check_crate(tree, "lib.rs", "library", LIBRARY);
    problems.extend(check_crate(
        tree,
        "bin/logto-m2m/main.rs",
        "command",
        COMMAND,
    ));
    problems
}

/// The source files, by their path under `src/`.
struct Tree {
    files: BTreeMap<PathBuf, String>,
}

impl Tree {
    fn read(root: PathBuf) -> Tree {
        let mut files = BTreeMap::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = fs::read_to_string(&path).unwrap();
                    files.insert(path.strip_prefix(&root).unwrap().to_owned(), text);
                }
            }
        }
        Tree { files }
    }

    fn text_mut(&mut self, path: &str) -> &mut String {
        self.files.get_mut(Path::new(path)).unwrap()
    }
}

/// The problems of the crate whose root is `root`: imports from a layer above, modules in
/// no layer, circles within a layer.
fn check_crate(tree: &Tree, root: &str, name: &str, layers: &[&[&str]]) -> Vec<String> {
    let layer_of = |module: &str| layers.iter().position(|l| l.contains(&module));
    let root = Path::new(root);
    let root_code = code_of(&tree.files[root]);
    let exports = reexports(&root_code);
    let modules = modules(tree, root);
    let tops: BTreeSet<&str> = modules.values().map(|path| path[0].as_str()).collect();
    let mut problems = Vec::new();
    for top in &tops {
        if layer_of(top).is_none() {
            problems.push(format!("{name}: {top} is in no layer"));
        }
    }
    for module in layers.iter().flat_map(|l| l.iter()) {
        if !tops.contains(module) {
            problems.push(format!("{name}: {module} is in a layer but is no module"));
        }
    }
    // Imports between top modules, each once; and between the files of one top module.
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    let mut file_edges: BTreeSet<(String, String)> = BTreeSet::new();
    let file_of: BTreeMap<&[String], &PathBuf> =
        modules.iter().map(|(f, p)| (p.as_slice(), f)).collect();
    for (file, path) in &modules {
        let code = code_of(&tree.files[file]);
        for mut target in paths(&code, path) {
            let Some(head) = target.first().cloned() else {
                continue;
            };
            let to = if tops.contains(head.as_str()) {
                head
            } else if let Some(module) = exports.get(&head) {
                target[0] = module.clone();
                module.clone()
            } else {
                let line = format!(
                    "{name}: {} imports {head}, an item of the crate root, above every layer",
                    path[0]
                );
                if !problems.contains(&line) {
                    problems.push(line);
                }
                continue;
            };
            if to != path[0] {
                edges.insert((path[0].clone(), to));
                continue;
            }
            // Within its top module: the file the path lands in, its longest prefix that
            // is a module. (Between top modules, the layers above hold the order.)
            if let Some(into) = (1..=target.len())
                .rev()
                .find_map(|n| file_of.get(&target[..n]))
                .filter(|into| **into != file)
            {
                file_edges.insert((shown(file), shown(into)));
            }
        }
    }
    for (from, to) in &edges {
        if let (Some(a), Some(b)) = (layer_of(from), layer_of(to)) {
            if b > a {
                problems.push(format!("{name}: {from} imports {to}, a layer above it"));
            }
        }
    }
    for layer in layers {
        problems.extend(circles(&edges, layer).into_iter().map(|circle| {
            format!(
                "{name}: {} import each other in a circle, within one layer",
                circle.join(", ")
            )
        }));
    }
    // The files of one top module that import each other round.
    let files: Vec<String> = modules.keys().map(|f| shown(f)).collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    problems.extend(circles(&file_edges, &files).into_iter().map(|circle| {
        format!(
            "{name}: the files {} import each other in a circle, within one module",
            circle.join(", ")
        )
    }));
    problems
}

/// A file's path under `src/` as text, with `/` between its parts.
fn shown(file: &Path) -> String {
    let parts: Vec<_> = file.iter().map(|p| p.to_string_lossy()).collect();
    parts.join("/")
}

/// Every module file of the crate at `root`, with its module path: followed from the root
/// through the `mod name;` declarations of code that is not a test's.
fn modules(tree: &Tree, root: &Path) -> BTreeMap<PathBuf, Vec<String>> {
    let mut found = BTreeMap::new();
    let mut todo = vec![(root.to_owned(), Vec::<String>::new())];
    while let Some((file, path)) = todo.pop() {
        let code = code_of(&tree.files[&file]);
        let folder = match file.file_name().and_then(|n| n.to_str()) {
            Some("lib.rs" | "main.rs" | "mod.rs") => file.parent().unwrap().to_owned(),
            _ => file.with_extension(""),
        };
        for name in declared_modules(&code) {
            let candidates = [
                folder.join(format!("{name}.rs")),
                folder.join(&name).join("mod.rs"),
            ];
            let child = candidates
                .into_iter()
                .find(|c| tree.files.contains_key(c))
                .unwrap_or_else(|| panic!("{}: mod {name} has no file", file.display()));
            let mut child_path = path.clone();
            child_path.push(name);
            todo.push((child.clone(), child_path.clone()));
            found.insert(child, child_path);
        }
    }
    found
}

/// The names of the `mod name;` declarations in `code`.
fn declared_modules(code: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "mod") {
        let after = rest[at + 3..].trim_start();
        let name = ident(after);
        if !name.is_empty() && after[name.len()..].trim_start().starts_with(';') {
            names.push(name.to_owned());
        }
        rest = &rest[at + 3..];
    }
    names
}

/// The names the crate root re-exports (`pub use m::{A, B as C};`), with their module.
fn reexports(code: &str) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        rest = &rest[at + 3..];
        let Some(end) = rest.find(';') else { break };
        let statement = rest[..end].trim();
        let statement = statement.strip_prefix("crate::").unwrap_or(statement);
        let Some((module, items)) = statement.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            if let Some(name) = item.split_whitespace().last() {
                names.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    names
}

/// Every `crate::` and `super::` path in the code of the module at `path`, from the crate
/// root, as its segments: `crate::a::{b, c::D}` gives `a::b` and `a::c::D`, `super::x` in
/// `a/b.rs` gives `a::x`. Whatever follows the module's name (an item, a method) is kept:
/// the module a path lands in is its longest prefix that is a module.
fn paths(code: &str, path: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = find_path_start(rest) {
        let start = &rest[at..];
        let (base, after) = if let Some(after) = start.strip_prefix("crate::") {
            (&path[..0], after)
        } else {
            let mut after = start;
            let mut up = 0;
            while let Some(next) = after.strip_prefix("super::") {
                after = next.trim_start();
                up += 1;
            }
            assert!(up <= path.len(), "super:: above the crate root in {path:?}");
            (&path[..path.len() - up], after)
        };
        // Past the prefix, so that `super::super::` is read once.
        rest = after;
        for tail in use_tree(after).0 {
            found.push(base.iter().cloned().chain(tail).collect());
        }
    }
    found
}

/// The paths of the use-tree at the start of `text` (`a::b`, `a::{b, c::{self, D}}`,
/// `a::*`, `a as b`; `self` is its group's own prefix), and how much of `text` it takes.
/// Outside a `use` it reads the path's segments up to whatever follows them.
fn use_tree(text: &str) -> (Vec<Vec<String>>, usize) {
    let at = |rest: &str| text.len() - rest.len();
    let mut prefix: Vec<String> = Vec::new();
    let mut rest = text.trim_start();
    loop {
        if let Some(group) = rest.strip_prefix('{') {
            let (inner, used) = use_group(group);
            let found = inner
                .into_iter()
                .map(|tail| prefix.iter().cloned().chain(tail).collect())
                .collect();
            return (found, at(group) + used);
        }
        let head = ident(rest);
        if !head.is_empty() && head != "self" {
            prefix.push(head.to_owned());
        }
        rest = rest[head.len()..].trim_start();
        match rest.strip_prefix("::") {
            Some(next) if !head.is_empty() => rest = next.trim_start(),
            // The end of this tree (`*`, `as b`, or what follows a path): up to its group's
            // next element or end.
            _ => {
                let end = rest.find([',', '}']).unwrap_or(rest.len());
                return (vec![prefix], at(rest) + end);
            }
        }
    }
}

/// The paths of a `{...}` group, from just after its `{`, and how much of `text` it takes
/// (its `}` included).
fn use_group(text: &str) -> (Vec<Vec<String>>, usize) {
    let mut found = Vec::new();
    let mut at = 0;
    loop {
        let rest = &text[at..];
        let next = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        at += rest.len() - next.len();
        if next.is_empty() {
            return (found, at);
        }
        if next.starts_with('}') {
            return (found, at + 1);
        }
        let (mut tree, used) = use_tree(next);
        found.append(&mut tree);
        // At least one character, so that a stray one can't stop the reading.
        at += used.max(1);
    }
}

/// Where the next `crate::` or `super::` path begins (not `$crate::`, not the end of a
/// longer name).
fn find_path_start(code: &str) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = [code[from..].find("crate::"), code[from..].find("super::")]
            .into_iter()
            .flatten()
            .min()?
            + from;
        let before = code[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            return Some(at);
        }
        from = at + 1;
    }
}

/// The next occurrence of the keyword `word`, as a whole word.
fn find_word(code: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    loop {
        let at = code[from..].find(word)? + from;
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let part_of_name = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !part_of_name(before) && !part_of_name(after) {
            return Some(at);
        }
        from = at + word.len();
    }
}

/// The identifier at the start of `text` (empty if none).
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The circles among the imports between the modules (or files) `nodes`, each as its
/// members sorted.
fn circles(edges: &BTreeSet<(String, String)>, nodes: &[&str]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let inside: Vec<(&str, &str)> = edges
        .iter()
        .filter(|(a, b)| nodes.contains(&a.as_str()) && nodes.contains(&b.as_str()))
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    // Two modules are in one circle when each reaches the other.
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::from([from]);
        let mut todo = vec![from];
        while let Some(m) = todo.pop() {
            for (_, next) in inside.iter().filter(|(a, _)| *a == m) {
                if *next == to {
                    return true;
                }
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        false
    };
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    for module in nodes {
        if placed.contains(module) {
            continue;
        }
        let mut circle: Vec<&str> = nodes
            .iter()
            .copied()
            .filter(|other| other != module && reaches(module, other) && reaches(other, module))
            .collect();
        if !circle.is_empty() {
            circle.push(module);
            circle.sort();
            placed.extend(circle.iter().copied());
            found.push(circle.into_iter().map(str::to_owned).collect());
        }
    }
    found
}

/// A file's code: comments gone, string and char literals emptied, and the items under
/// `#[cfg(test)]` left out (a file with `#![cfg(test)]` is all test).
fn code_of(text: &str) -> String {
    let text = strip_comments_and_literals(text);
    if text.contains("#![cfg(test)]") {
        return String::new();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        rest = skip_item(&rest[at + "#[cfg(test)]".len()..]);
    }
    out.push_str(rest);
    out
}

/// What follows the item (or field, statement, expression) at the start of `text`, its
/// other attributes included: it ends at a `;` or `,` outside brackets, at the `}` that
/// closes the body of an item (`fn`, `mod`, `impl`...), or before a bracket that closes
/// what encloses it (a last field without a comma).
fn skip_item(text: &str) -> &str {
    let mut depth = 0usize;
    let mut first_word = None;
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth == 0 => return &text[i..],
            ')' | ']' | '}' => {
                depth -= 1;
                let item = matches!(
                    first_word,
                    Some(
                        "fn" | "mod"
                            | "impl"
                            | "struct"
                            | "enum"
                            | "trait"
                            | "union"
                            | "pub"
                            | "unsafe"
                            | "extern"
                            | "macro_rules"
                    )
                );
                if depth == 0 && c == '}' && item {
                    return &text[i + 1..];
                }
            }
            ';' | ',' if depth == 0 => return &text[i + 1..],
            c if depth == 0 && first_word.is_none() && (c.is_alphabetic() || c == '_') => {
                first_word = Some(ident(&text[i..]));
            }
            _ => {}
        }
    }
    ""
}

/// Comments removed; string and char literals emptied, so that what they hold counts for
/// nothing (a path, a brace, a `#[cfg(test)]`).
fn strip_comments_and_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        let after_name = out
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += block_comment_len(rest);
            out.push(' ');
        } else if let Some(len) = (!after_name).then(|| raw_string_len(rest)).flatten() {
            i += len;
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if let Some(len) = (b[i] == b'\'').then(|| char_literal_len(rest)).flatten() {
            i += len;
            out.push_str("' '");
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of the block comment at the start of `rest`, nested ones included.
fn block_comment_len(rest: &str) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < rest.len() {
        if rest[i..].starts_with("/*") {
            depth += 1;
            i += 2;
        } else if rest[i..].starts_with("*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += rest[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    rest.len()
}

/// The length of the raw string (`r"…"`, `r#"…"#`, `br"…"`) at the start of `rest`.
fn raw_string_len(rest: &str) -> Option<usize> {
    let r = rest.strip_prefix('b').unwrap_or(rest).strip_prefix('r')?;
    let hashes = r.len() - r.trim_start_matches('#').len();
    let body = r[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close).map_or(body.len(), |e| e + close.len());
    Some(rest.len() - body.len() + end)
}

/// The length of the char literal at the start of `rest` (`'a'`, `'\n'`, `'\u{1F600}'`,
/// `'{'`); `None` for a lifetime (`'a`).
fn char_literal_len(rest: &str) -> Option<usize> {
    let mut chars = rest.char_indices().skip(1);
    let (_, c) = chars.next()?;
    if c == '\\' {
        // The escaped character, then up to the closing quote.
        return Some(rest.get(3..)?.find('\'')? + 4);
    }
    let (at, close) = chars.next()?;
    (close == '\'').then_some(at + 1)
}
