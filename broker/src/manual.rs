//! The manual pages, generated from what the binary itself knows: `starling(1)` (and one
//! page per subcommand: `starling-man(1)`, `starling-passwd(1)`) from the command line
//! definition (`crate::cli`, rendered by `clap_mangen`), and `starling.toml(5)` from
//! `starling.example.toml`, the one description of every configuration key
//! ([`crate::config::example`]). `starling man --dir DIR` writes them under a manual root
//! (`DIR/man1`, `DIR/man5`).

use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Inline, Roff, bold, italic, roman};

use crate::cli::Cli;
use crate::config::example::{self, Example, Key, Section};

/// One page: where it goes under the manual root, and its roff source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// `man1/starling.1`, `man5/starling.toml.5`, ...
    pub path: PathBuf,
    /// The page's roff source.
    pub roff: String,
}

/// Every page: `starling(1)`, one `starling-NAME(1)` per subcommand, `starling.toml(5)`.
pub fn pages() -> Vec<Page> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut commands = vec![command.clone()];
    commands.extend(command.get_subcommands().cloned());
    let mut pages: Vec<Page> = commands
        .into_iter()
        .map(|command| {
            let man = Man::new(command);
            let mut roff = Vec::new();
            // Rendering into a Vec cannot fail.
            let _ = man.render(&mut roff);
            Page {
                path: Path::new("man1").join(man.get_filename()),
                roff: without_hyphenation(&String::from_utf8_lossy(&roff)),
            }
        })
        .collect();
    pages.push(Page {
        path: Path::new("man5").join("starling.toml.5"),
        roff: without_hyphenation(&config_page(&example::parse(example::EXAMPLE_CONFIG))),
    });
    pages
}

/// `roff` with hyphenation turned off after its title (`.TH`) line: a flag or key such as
/// `--max-subscriptions-per-client` must not be split where a reader would copy it.
fn without_hyphenation(roff: &str) -> String {
    let title = roff.find("\n.TH ").map(|at| at + 1);
    match title.and_then(|at| roff[at..].find('\n').map(|end| at + end + 1)) {
        Some(after) => format!("{}.nh\n{}", &roff[..after], &roff[after..]),
        None => roff.to_string(),
    }
}

/// Writes every page under `root` (creating `man1/` and `man5/`); the files written.
pub fn write_pages(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for page in pages() {
        let path = root.join(&page.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, page.roff)?;
        written.push(path);
    }
    Ok(written)
}

/// `starling.toml(5)` from the example file's structure.
pub fn config_page(example: &Example) -> String {
    let mut page = Roff::new();
    let source = format!("starling {}", env!("CARGO_PKG_VERSION"));
    page.control(
        "TH",
        ["STARLING.TOML", "5", "", source.as_str(), "File Formats"],
    );
    page.control("SH", ["NAME"]);
    page.text([roman(
        "starling.toml - configuration file of the Starling MQTT broker",
    )]);
    page.control("SH", ["SYNOPSIS"]);
    page.text([bold("starling --config"), roman(" "), italic("FILE")]);
    page.control("br", []);
    page.text([bold("starling --check-config"), roman(" "), italic("FILE")]);
    page.control("SH", ["DESCRIPTION"]);
    page.text([roman(
        "A TOML file. The keys below are those of starling.example.toml, shipped with \
         Starling, whose comments this page reproduces; each key is shown with the value \
         that file gives it, marked (default) or (example).",
    )]);
    prose(&mut page, &example.header);
    page.control("SH", ["KEYS"]);
    for section in &example.sections {
        section_text(&mut page, section);
    }
    page.control("SH", ["FILES"]);
    page.text([
        bold("/etc/starling/starling.toml"),
        roman(": where the systemd unit shipped with Starling reads it."),
    ]);
    page.control("SH", ["SEE ALSO"]);
    page.text([bold("starling"), roman("(1)")]);
    page.render()
}

fn section_text(page: &mut Roff, section: &Section) {
    let mut heading = section.header();
    if section.example {
        heading.push_str(" (example)");
    }
    page.control("SS", [heading.as_str()]);
    prose(page, &section.doc);
    for key in &section.keys {
        key_text(page, key);
    }
}

fn key_text(page: &mut Roff, key: &Key) {
    page.control("TP", []);
    let marked = if key.example { "example" } else { "default" };
    page.text([
        bold(key.name.as_str()),
        roman(format!(" = {} ({marked})", key.value)),
    ]);
    if key.doc.is_empty() {
        page.text([roman("")]);
    }
    // The first paragraph is the tag's body; later ones would leave the indent, so they
    // are kept in the same paragraph.
    let lines: Vec<String> = key.doc.iter().filter(|l| !l.is_empty()).cloned().collect();
    if !lines.is_empty() {
        page.text(inline(&lines.join(" ")));
    }
}

/// Comment lines as paragraphs: blank lines separate them, indented lines are kept as they
/// are (command examples).
fn prose(page: &mut Roff, lines: &[String]) {
    let mut paragraph: Vec<&str> = Vec::new();
    let mut verbatim: Vec<&str> = Vec::new();
    let flush = |page: &mut Roff, paragraph: &mut Vec<&str>, verbatim: &mut Vec<&str>| {
        if !paragraph.is_empty() {
            page.control("PP", []);
            page.text(inline(&paragraph.join(" ")));
            paragraph.clear();
        }
        if !verbatim.is_empty() {
            page.control("PP", []);
            page.control("nf", []);
            for line in verbatim.iter() {
                page.text([roman(line.trim_end())]);
            }
            page.control("fi", []);
            verbatim.clear();
        }
    };
    for line in lines {
        if line.trim().is_empty() {
            flush(page, &mut paragraph, &mut verbatim);
        } else if line.starts_with("  ") {
            if !paragraph.is_empty() {
                flush(page, &mut paragraph, &mut verbatim);
            }
            verbatim.push(line);
        } else {
            if !verbatim.is_empty() {
                flush(page, &mut paragraph, &mut verbatim);
            }
            paragraph.push(line);
        }
    }
    flush(page, &mut paragraph, &mut verbatim);
}

/// Text with `code` spans in bold.
fn inline(text: &str) -> Vec<Inline> {
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(|(i, part)| if i % 2 == 1 { bold(part) } else { roman(part) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_a_title_and_a_name() {
        let pages = pages();
        let paths: Vec<String> = pages.iter().map(|p| p.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "man1/starling.1",
                "man1/starling-man.1",
                "man1/starling-passwd.1",
                "man1/starling-store.1",
                "man5/starling.toml.5"
            ]
        );
        for page in &pages {
            assert!(page.roff.contains("\n.nh\n.SH NAME\n"), "{}", page.roff);
        }
    }

    #[test]
    fn code_spans_are_bold() {
        assert_eq!(inline("a `b` c"), vec![roman("a "), bold("b"), roman(" c")]);
    }
}
