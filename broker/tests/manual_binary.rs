//! `starling man --dir DIR` against the real binary: it writes `starling(1)`,
//! `starling-man(1)`, `starling-passwd(1)` and `starling.toml(5)`; `starling(1)` names
//! every flag, `starling.toml(5)` every key of `starling.example.toml`, and the example has
//! a key for every flag that stands for one. Where `man` is installed, each page renders
//! without a complaint.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use starling::cli::Cli;
use starling::config::example;

mod tempdir_common;
use tempdir_common::TempDir;

/// Flags that are not configuration keys.
const NOT_KEYS: [&str; 5] = ["config", "check-config", "listen", "help", "version"];

/// Runs `starling man --dir DIR`; the paths it printed.
fn write_pages(dir: &Path) -> Vec<PathBuf> {
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("man")
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(PathBuf::from).collect()
}

/// The page as `man` shows it (plain text, no hyphenation, wide lines), or `None` where
/// `man` is not installed.
fn rendered(page: &Path) -> Option<String> {
    let output = match Command::new("man")
        .arg("-l")
        .arg(page)
        .env("LC_ALL", "C")
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat")
        .env("MAN_KEEP_FORMATTING", "")
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => panic!("run man: {error}"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "man -l {}: {stderr}",
        page.display()
    );
    assert!(
        stderr.trim().is_empty(),
        "man -l {} complained: {stderr}",
        page.display()
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Every long flag of the command line.
fn long_flags() -> Vec<String> {
    Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_long().map(str::to_string))
        .collect()
}

#[test]
fn the_pages_are_written_under_the_manual_root() {
    let dir = TempDir::new("man-root");
    let written = write_pages(dir.path());
    let expected: Vec<PathBuf> = [
        "man1/starling.1",
        "man1/starling-man.1",
        "man1/starling-passwd.1",
        "man1/starling-store.1",
        "man5/starling.toml.5",
    ]
    .iter()
    .map(|p| dir.join(p))
    .collect();
    assert_eq!(written, expected);
    for page in &written {
        let text = std::fs::read_to_string(page).expect("read the page");
        assert!(text.contains("\n.TH "), "{}: {text}", page.display());
        if let Some(shown) = rendered(page) {
            assert!(shown.contains("NAME"), "{shown}");
        }
    }
}

#[test]
fn starling_1_names_every_flag() {
    let dir = TempDir::new("man-flags");
    write_pages(dir.path());
    let page = dir.join("man1/starling.1");
    let roff = std::fs::read_to_string(&page).expect("read the page");
    let flags = long_flags();
    assert!(flags.len() > 25, "{flags:?}");
    for flag in &flags {
        let escaped = format!("\\-\\-{}", flag.replace('-', "\\-"));
        assert!(roff.contains(&escaped), "{escaped} not in the page");
    }
    if let Some(shown) = rendered(&page) {
        for flag in &flags {
            assert!(
                shown.contains(&format!("--{flag}")),
                "--{flag} not in:\n{shown}"
            );
        }
        assert!(shown.contains("starling.toml(5)"), "{shown}");
    }
}

#[test]
fn starling_toml_5_names_every_key_and_every_flag_has_one() {
    let dir = TempDir::new("man-keys");
    write_pages(dir.path());
    let page = dir.join("man5/starling.toml.5");
    let parsed = example::parse(example::EXAMPLE_CONFIG);
    let keys = example::dotted_keys(&parsed);
    // Each flag that stands for a key is `--name` for `section.name` (`--pool-name` for
    // `pool.name`, `--persistence-name` for `persistence.name`): the example, and so the
    // page, has that key.
    for flag in long_flags()
        .iter()
        .filter(|f| !NOT_KEYS.contains(&f.as_str()))
    {
        let name = flag.replace('-', "_");
        // Sections whose flags carry the section's name first.
        let prefixed = ["pool", "persistence"];
        let found = match prefixed
            .iter()
            .find_map(|&section| Some((section, name.strip_prefix(&format!("{section}_"))?)))
        {
            Some((section, key)) => keys.contains(&format!("{section}.{key}")),
            None => keys.iter().any(|k| {
                k.split_once('.')
                    .is_some_and(|(s, n)| !prefixed.contains(&s) && n == name)
            }),
        };
        assert!(
            found,
            "--{flag} has no key in starling.example.toml: {keys:?}"
        );
    }
    for listener_key in ["protocol", "bind", "max_connections"] {
        assert!(
            keys.contains(&format!("listeners.{listener_key}")),
            "{keys:?}"
        );
    }
    let roff = std::fs::read_to_string(&page).expect("read the page");
    let shown = rendered(&page);
    for section in &parsed.sections {
        for key in &section.keys {
            let line = format!("{} = {}", key.name, key.value);
            let escaped = format!("\\fB{}\\fR = {}", key.name, key.value.replace('-', "\\-"));
            assert!(roff.contains(&escaped), "{escaped} not in the page");
            if let Some(shown) = &shown {
                assert!(shown.contains(&line), "{line} not in:\n{shown}");
            }
        }
    }
}
