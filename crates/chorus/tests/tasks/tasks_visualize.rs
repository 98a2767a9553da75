//! `Client::visualize`: the task graph as DOT and SVG, grouped so a large map stays
//! readable.

use chorus::ErrorKind;

use crate::support::{add, builder, inc};
use crate::web;

#[test]
fn a_map_of_10000_and_its_pairwise_sums_are_drawn_as_two_groups() {
    let cluster = builder(1).start().unwrap();
    let client = cluster.client();
    let incs = client.map(inc, 0..10_000i64);
    let sums: Vec<_> = incs.chunks(2).map(|p| client.submit(add, (&p[0], &p[1]))).collect();
    let dir = web::artifacts();
    let dot_path = dir.join("graph.dot");
    client.visualize(&sums, &dot_path).unwrap();
    let dot = std::fs::read_to_string(&dot_path).unwrap();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(dot.contains("inc × 10000") && dot.contains("add × 5000"), "{dot}");
    assert!(dot.contains("[label=\"10000\"]"), "one edge between the groups, carrying 10000 inputs: {dot}");
    assert!(dot.lines().count() < 12, "grouped, not 15,000 boxes:\n{dot}");

    // A small graph is drawn task by task.
    let one = client.submit(add, (&incs[0], &incs[1]));
    client.visualize(std::slice::from_ref(&one), &dot_path).unwrap();
    let dot = std::fs::read_to_string(&dot_path).unwrap();
    assert_eq!(dot.matches(" -> ").count(), 2, "{dot}");

    let e = client.visualize(&sums, dir.join("graph.png")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains(".svg"), "{e}");

    if std::process::Command::new("dot").arg("-V").output().is_err() {
        let why = "Graphviz's dot is not installed (.ci/run installs graphviz)";
        assert!(std::env::var("CHORUS_REQUIRE_GRAPHVIZ").map_or(true, |v| v != "1"), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let svg_path = dir.join("graph.svg");
    client.visualize(&sums, &svg_path).unwrap();
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.contains("<svg") && svg.contains("inc × 10000"), "{svg}");
    client.gather(&sums).unwrap();
}
