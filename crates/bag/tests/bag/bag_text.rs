//! `read_text` and `to_textfiles`: lines across block boundaries, files without a final
//! newline, CRLF, empty files, compressed files, and what is wrong before any task.

use std::io::Write;

use chorus_bag::{self as db, func, ReadText};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{cases, cluster, scratch};

/// What `str::lines` makes of the concatenated files: the reference.
fn lines_of(texts: &[String]) -> Vec<String> {
    texts.iter().flat_map(|t| t.lines().map(str::to_string).collect::<Vec<_>>()).collect()
}

#[test]
fn lines_are_read_once_wherever_the_blocks_cut_them() {
    let cluster = cluster(2);
    let client = cluster.client();
    let line = prop::collection::vec(prop::sample::select(vec!["a", "bb", "ccc ", "é", " ", "\r"]), 0..6).prop_map(|w| w.concat());
    let file = (prop::collection::vec(line, 0..12), any::<bool>(), any::<bool>()).prop_map(|(lines, crlf, last)| {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut t = lines.join(end);
        if last && !t.is_empty() {
            t.push_str(end);
        }
        t
    });
    let strategy = (prop::collection::vec(file, 1..4), 1u64..40);
    let mut runner = TestRunner::new(Config { cases: cases() * 3, failure_persistence: None, ..Config::default() });
    let case = std::cell::Cell::new(0);
    runner
        .run(&strategy, |(texts, blocksize)| {
            case.set(case.get() + 1);
            let dir = scratch(&format!("lines-{}", case.get()));
            for (i, t) in texts.iter().enumerate() {
                std::fs::write(dir.join(format!("f{i}.txt")), t).unwrap();
            }
            let pattern = format!("{}/f*.txt", dir.display());
            let bag = ReadText::new(pattern).blocksize(blocksize).open(&client).unwrap();
            let expect = lines_of(&texts);
            prop_assert_eq!(bag.compute().unwrap(), expect.clone(), "blocksize {}", blocksize);
            prop_assert_eq!(bag.count().unwrap(), expect.len() as u64);
            Ok(())
        })
        .unwrap();
}

#[test]
fn compressed_files_are_one_partition_each_and_empty_files_give_no_lines() {
    let cluster = cluster(2);
    let client = cluster.client();
    let dir = scratch("compressed");
    let text = "one two\r\nthree\nfour five six";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    std::fs::write(dir.join("a.txt.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(dir.join("b.txt.zst"), zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
    std::fs::write(dir.join("c.txt"), "").unwrap();
    let bag = ReadText::new(format!("{}/*", dir.display())).blocksize(4).open(&client).unwrap();
    assert_eq!(bag.npartitions(), 3);
    let mut expect = lines_of(&[text.to_string()]);
    expect.extend(lines_of(&[text.to_string()]));
    assert_eq!(bag.compute().unwrap(), expect);
    let words = bag.split_whitespace().frequencies().unwrap().compute().unwrap();
    assert_eq!(words, [("one", 2), ("two", 2), ("three", 2), ("four", 2), ("five", 2), ("six", 2)].map(|(w, n)| (w.to_string(), n)).to_vec());
}

#[test]
fn the_fused_word_count_agrees_with_split_whitespace() {
    let cluster = cluster(2);
    let client = cluster.client();
    let dir = scratch("words");
    // Unicode white space (no-break space, ideographic space) and a vertical tab
    // separate words as str::split_whitespace says.
    let text = "a b\u{a0}c\td\u{3000}e\x0bf  \n\nä ö ä\r\nlast a";
    std::fs::write(dir.join("w.txt"), text).unwrap();
    let path = dir.join("w.txt").display().to_string();
    let mut expect: Vec<(String, u64)> = Vec::new();
    for w in text.split_whitespace() {
        match expect.iter_mut().find(|(x, _)| x == w) {
            Some(e) => e.1 += 1,
            None => expect.push((w.to_string(), 1)),
        }
    }
    for blocksize in [1, 3, 7, 1000] {
        let lines = ReadText::new(&path).blocksize(blocksize).open(&client).unwrap();
        let fused = lines.split_whitespace().frequencies().unwrap().compute().unwrap();
        let generic = lines.flat_map(func!(|l: String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())).frequencies().unwrap().compute().unwrap();
        let mut sorted = expect.clone();
        sorted.sort();
        let (mut f, mut g) = (fused.clone(), generic.clone());
        f.sort();
        g.sort();
        assert_eq!(f, sorted, "blocksize {blocksize}");
        assert_eq!(g, sorted, "blocksize {blocksize}");
    }
}

#[test]
fn text_that_is_not_utf8_names_the_file_and_offset_unless_lossy() {
    let cluster = cluster(1);
    let client = cluster.client();
    let dir = scratch("utf8");
    let path = dir.join("bad.txt");
    std::fs::write(&path, b"good line\nbad \xff here\n").unwrap();
    let err = db::read_text(&client, path.display().to_string()).unwrap().compute().unwrap_err();
    let db::Error::Tasks(chorus_tasks::Error::Task(e)) = &err else { panic!("a task error, not {err:?}") };
    assert_eq!(e.kind, chorus_tasks::FailureKind::Error);
    assert!(e.message.contains(&path.display().to_string()) && e.message.contains("byte offset 14"), "{}", e.message);
    let lossy = ReadText::new(path.display().to_string()).lossy(true).open(&client).unwrap().compute().unwrap();
    assert_eq!(lossy, vec!["good line".to_string(), "bad \u{fffd} here".to_string()]);
}

#[test]
fn a_missing_file_or_a_glob_without_matches_fails_before_any_task() {
    let cluster = cluster(1);
    let client = cluster.client();
    let dir = scratch("missing");
    let missing = dir.join("nope.txt").display().to_string();
    assert!(matches!(db::read_text(&client, &missing), Err(db::Error::File { .. })));
    assert!(matches!(db::read_text(&client, format!("{}/*.txt", dir.display())), Err(db::Error::NoMatch { .. })));
    assert!(matches!(ReadText::new(&missing).blocksize(0).open(&client), Err(db::Error::InvalidArgument(_))));
}

#[test]
fn to_textfiles_writes_one_file_per_partition_that_read_text_reads_back() {
    let cluster = cluster(2);
    let client = cluster.client();
    let dir = scratch("out");
    let bag = db::range(&client, 100, 4).unwrap().map(func!(|i: u64| format!("line {i}")));
    let files = bag.to_textfiles(dir.join("parts")).unwrap();
    assert_eq!(files.len(), 4);
    assert!(files[0].ends_with("part-00000.txt"));
    let back = db::read_text(&client, format!("{}/parts/part-*.txt", dir.display())).unwrap();
    assert_eq!(back.compute().unwrap(), (0..100).map(|i| format!("line {i}")).collect::<Vec<_>>());
}
