//! The README's sqlx example is this crate's program, verbatim, so it always compiles.

#[test]
fn the_readme_shows_this_program_verbatim() {
    let readme = include_str!("../../../README.md");
    let program = include_str!("../src/main.rs");
    let block = format!("```rust,no_run\n{program}```\n");
    assert!(
        readme.contains(&block),
        "README.md's sqlx example differs from examples/sqlx-nats/src/main.rs; change both together"
    );
}
