//! The rooms of `src/` and the arrows between them, read from the source
//! itself: every `crate::` path outside comments (in `use` lines and in
//! code) is an arrow from the file's room to the room it names. Arrows
//! point down only, from a room to one of lower rank; `error` and the
//! client's `stats.rs` are leaves; `cluster` and `cache` do not know each
//! other (the cluster reaches the caching layers only through the store
//! trait, and the other way round).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The rooms, lowest first. A room may use any room of lower rank.
const RANKS: &[(&str, u32)] = &[
    ("error", 0),
    ("setters", 0),
    ("ttl", 1),
    ("rules", 1),
    ("address", 1),
    ("proto", 1),
    ("codec", 2),
    ("tls", 2),
    ("pool", 3),
    ("server", 3),
    ("store", 4),
    ("client", 5),
    ("cluster", 6),
    ("cache", 6),
    ("fuzzing", 7),
];

/// Files that may name nothing of the crate at all.
const LEAVES: &[&str] = &["error/mod.rs", "error/code.rs", "client/stats.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file of the library (the command-line tool in `src/bin` is
/// a crate of its own), as a path relative to `src/`.
fn library_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|name| name != "bin") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files
        .into_iter()
        .map(|path| path.strip_prefix(src()).expect("under src").to_path_buf())
        .collect()
}

/// The room of a file: its folder under `src/`, or its name for a file
/// at the top (`ttl.rs` is the room `ttl`); `None` for `lib.rs`, the
/// facade.
fn room_of(file: &Path) -> Option<String> {
    let first = file.components().next()?.as_os_str().to_str()?.to_owned();
    let room = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (room != "lib").then_some(room)
}

/// The source without comments, doc comments and string literals' worth
/// of prose: what the compiler reads as paths.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .filter(|line| !line.trim().is_empty())
}

/// The names the facade re-exports at the crate's root, with the room
/// each comes from: `crate::Client` is an arrow to `client`.
fn root_names() -> BTreeMap<String, String> {
    let lib = fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
    let mut names = BTreeMap::new();
    let mut statement = String::new();
    for line in code_lines(&lib) {
        if statement.is_empty() && !line.trim_start().starts_with("pub use ") {
            continue;
        }
        statement.push_str(line.trim());
        statement.push(' ');
        if !line.trim_end().ends_with(';') {
            continue;
        }
        let path = statement.trim_start_matches("pub use ").trim().to_owned();
        statement.clear();
        let room = path.split("::").next().unwrap_or_default().to_owned();
        let listed = match (path.find('{'), path.rfind('}')) {
            (Some(open), Some(close)) => path[open + 1..close].to_owned(),
            _ => path
                .rsplit("::")
                .next()
                .unwrap_or_default()
                .trim_end_matches(';')
                .to_owned(),
        };
        for name in listed.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                names.insert(name.to_owned(), room.clone());
            }
        }
    }
    names
}

/// Every room a file names through a `crate::` (or `$crate::`) path.
fn arrows_of(text: &str, root: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut rooms = BTreeSet::new();
    for line in code_lines(text) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            rest = after;
            let names: Vec<&str> = if let Some(list) = after.strip_prefix('{') {
                let end = list.find('}').unwrap_or(list.len());
                list[..end].split(',').collect()
            } else {
                vec![after]
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name.is_empty() {
                    continue;
                }
                let room = if RANKS.iter().any(|(room, _)| *room == name) {
                    name
                } else if let Some(room) = root.get(&name) {
                    room.clone()
                } else {
                    continue;
                };
                rooms.insert(room);
            }
        }
    }
    rooms
}

fn rank(room: &str) -> Option<u32> {
    RANKS
        .iter()
        .find(|(name, _)| *name == room)
        .map(|(_, rank)| *rank)
}

#[test]
fn every_arrow_between_rooms_points_down() {
    let root = root_names();
    assert!(
        root.get("CacheStore").map(String::as_str) == Some("store")
            && root.get("Client").map(String::as_str) == Some("client"),
        "the facade's re-exports were not read: {root:?}"
    );
    let mut wrong = Vec::new();
    let mut seen_rooms = BTreeSet::new();
    for file in library_files() {
        let Some(room) = room_of(&file) else { continue };
        seen_rooms.insert(room.clone());
        let Some(own) = rank(&room) else {
            wrong.push(format!("{}: room {room:?} has no rank", file.display()));
            continue;
        };
        let text = fs::read_to_string(src().join(&file)).expect("read");
        for target in arrows_of(&text, &root) {
            if target == room {
                continue;
            }
            match rank(&target) {
                Some(theirs) if theirs < own => {}
                _ => wrong.push(format!("{}: {room} -> {target}", file.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows that do not point down:\n{}",
        wrong.join("\n")
    );
    for room in [
        "client", "cluster", "cache", "codec", "pool", "store", "error",
    ] {
        assert!(
            seen_rooms.contains(room),
            "room {room} not found: {seen_rooms:?}"
        );
    }
}

#[test]
fn the_error_type_and_the_stats_are_leaves() {
    let root = root_names();
    for leaf in LEAVES {
        let text = fs::read_to_string(src().join(leaf)).expect(leaf);
        let own = room_of(Path::new(leaf)).expect("room");
        let arrows: Vec<String> = arrows_of(&text, &root)
            .into_iter()
            .filter(|room| *room != own || *leaf == "client/stats.rs")
            .collect();
        assert!(arrows.is_empty(), "{leaf} names {arrows:?}");
    }
}

#[test]
fn the_reader_of_arrows_sees_what_it_must() {
    let root = root_names();
    let text =
        "use crate::{CacheStore, Client};\nlet x = crate::codec::Method::Get; // crate::cache\n";
    let arrows: Vec<String> = arrows_of(text, &root).into_iter().collect();
    assert_eq!(arrows, ["client", "codec", "store"]);
}
