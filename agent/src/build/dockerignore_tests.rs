//! `.dockerignore` matching against a table of docker build's own results: patterns, path
//! cleaning, errors naming their line, directory walk hints.
use super::*;

fn ignore(text: &str) -> DockerIgnore {
    DockerIgnore::parse(text).unwrap()
}

/// (patterns, path, excluded) — cases from Docker's documentation and moby's
/// patternmatcher tests.
#[test]
fn table_against_docker_behaviour() {
    let cases: &[(&str, &str, bool)] = &[
        // Documented examples (docs.docker.com, .dockerignore files).
        ("*/temp*", "somedir/temporary.txt", true),
        ("*/temp*", "somedir/temp", true),
        ("*/temp*", "temp", false),
        ("*/temp*", "a/b/temp.txt", false),
        ("*/*/temp*", "somedir/subdir/temporary.txt", true),
        ("*/*/temp*", "somedir/temporary.txt", false),
        ("temp?", "tempa", true),
        ("temp?", "temp", false),
        ("temp?", "tempab", false),
        ("temp?", "dir/tempa", false),
        ("**/*.go", "a.go", true),
        ("**/*.go", "x/y/z.go", true),
        ("**/*.go", "x/y/z.gox", false),
        ("*.md\n!README.md", "README.md", false),
        ("*.md\n!README.md", "CHANGES.md", true),
        (
            "*.md\n!README*.md\nREADME-secret.md",
            "README-secret.md",
            true,
        ),
        (
            "*.md\n!README*.md\nREADME-secret.md",
            "README-public.md",
            false,
        ),
        (
            "*.md\nREADME-secret.md\n!README*.md",
            "README-secret.md",
            false,
        ),
        // Leading `/` and `./` are stripped; trailing `/` does not matter.
        ("/node_modules", "node_modules", true),
        ("./node_modules", "node_modules/x/index.js", true),
        ("node_modules/", "node_modules/a", true),
        ("/node_modules", "src/node_modules", false),
        ("a//b/../c", "a/c", true),
        // A directory match excludes its contents.
        ("dist", "dist/app/main.js", true),
        ("dist", "distro", false),
        ("docs/*", "docs/a/b/c.txt", true),
        // `**` forms.
        ("**", "anything/at/all", true),
        ("a/**", "a/b", true),
        ("a/**", "a/b/c", true),
        ("a/**", "a", false),
        ("a/**/b", "a/b", true),
        ("a/**/b", "a/x/y/b", true),
        ("a/**/b", "a/x/y/c", false),
        ("**/node_modules", "node_modules", true),
        ("**/node_modules", "pkg/node_modules/x", true),
        ("**/node_modules", "pkg/xnode_modules", false),
        // Docker's suffix fast path: `**foo` matches any path ending in foo.
        ("**foo", "xfoo", true),
        ("a**", "abc/d", true),
        // Character classes and escapes (filepath.Match syntax).
        ("[a-c].txt", "b.txt", true),
        ("[a-c].txt", "d.txt", false),
        ("[^a-c].txt", "d.txt", true),
        ("[^a-c].txt", "a.txt", false),
        ("file\\*", "file*", true),
        ("file\\*", "filex", false),
        ("a.b", "axb", false),
        ("a+(b)", "a+(b)", true),
        ("[[]x", "[x", true),
        // Comments only in the first column; blank lines ignored.
        ("# comment\n\n  \nsecret", "# comment", false),
        ("# comment\n\n  \nsecret", "secret", true),
        ("  secret  ", "secret", true),
        (" #notcomment", "#notcomment", true),
        // Last match wins; an exception cannot undo a later exclusion.
        ("*\n!keep", "keep", false),
        ("*\n!keep", "other", true),
        ("*\n!keep\nkeep", "keep", true),
        ("!keep\n*", "keep", true),
        // Exception for a file inside an excluded dir.
        ("build\n!build/keep.txt", "build/keep.txt", false),
        ("build\n!build/keep.txt", "build/drop.txt", true),
        // Exceptions with space after `!` are trimmed.
        ("*.log\n! important.log", "important.log", false),
        // Path-like patterns do not match across separators.
        ("*", "a/b", true), // via parent "a"
        ("a*b", "a/b", false),
    ];
    for (patterns, path, want) in cases {
        let di = ignore(patterns);
        assert_eq!(
            di.matches(path),
            *want,
            "patterns {patterns:?} path {path:?}"
        );
    }
}

#[test]
fn clean_follows_go() {
    for (input, want) in [
        ("", "."),
        ("a/", "a"),
        ("./a/./b/", "a/b"),
        ("a//b", "a/b"),
        ("a/../b", "b"),
        ("../a", "../a"),
        ("/../a", "/a"),
        ("/", "/"),
        ("a/..", "."),
    ] {
        assert_eq!(go_clean(input), want, "{input:?}");
    }
}

#[test]
fn bad_patterns_are_named_with_their_line() {
    let err = DockerIgnore::parse("ok\n[abc\n").unwrap_err();
    assert!(
        matches!(err, IgnoreError::BadPattern { line: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("[abc"), "{err}");
    for bad in ["[]", "[-a]", "[a-]", "x\\", "[^]"] {
        assert!(
            DockerIgnore::parse(bad).is_err(),
            "{bad:?} must be rejected"
        );
    }
    assert!(
        DockerIgnore::parse("[]a]x").is_err(),
        "Go rejects an empty class"
    );
    for good in ["[\\]]", "\\[x", "[a-z]", "[\\-a]", "[^a]"] {
        assert!(
            DockerIgnore::parse(good).is_ok(),
            "{good:?} must be accepted"
        );
    }
    let err = DockerIgnore::parse("a\n!\n").unwrap_err();
    assert_eq!(err, IgnoreError::IllegalExclusion { line: 2 });
}

#[test]
fn directory_walk_hints() {
    let di = ignore("build\n!build/keep.txt\n!**/*.md");
    assert!(di.has_exclusions());
    assert!(di.exception_may_apply_under("build"));
    // `**/*.md` does not start with `docs/`: Docker does not descend into an excluded docs/.
    assert!(!di.exception_may_apply_under("docs"));
    assert!(!ignore("build").has_exclusions());
}

#[test]
fn single_parent_match_as_the_cli_uses_it() {
    let di = ignore("docker");
    assert!(di.matches_single_parent("docker/Dockerfile"));
    assert!(!di.matches_single_parent("Dockerfile"));
    let di = ignore("*\n!src");
    assert!(di.matches_single_parent(".dockerignore"));
}

#[test]
fn bom_is_stripped() {
    assert!(ignore("\u{feff}secret").matches("secret"));
}
