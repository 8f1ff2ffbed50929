//! The README's first example and the crate docs' example are the same, word for word.

fn first_rust_block(text: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("```rust"));
    lines.next().expect("a ```rust block");
    lines
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_example_matches_crate_docs() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let lib = std::fs::read_to_string(format!("{root}/src/lib.rs")).unwrap();
    let docs: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(first_rust_block(&readme), first_rust_block(&docs));
}

/// Issue 23: a newcomer reads the README on a few screens; the rest lives in the crate docs,
/// CONTRIBUTING.md and the bench. The old README was 56,779 bytes.
#[test]
fn readme_fits_in_10_kb() {
    let root = env!("CARGO_MANIFEST_DIR");
    let len = std::fs::metadata(format!("{root}/README.md"))
        .unwrap()
        .len();
    assert!(len <= 10_000, "README.md is {len} bytes, more than 10,000");
}
