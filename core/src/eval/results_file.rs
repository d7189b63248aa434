//! `docs/results.md` is written by several commands; each owns one section
//! between markers and rewrites only that, so no command erases another's figures.

use std::path::Path;

const HEADER: &str = "# Results\n\nEvery figure here is written by a command of this repository; \
each section names its command. Do not edit by hand.\n";

/// Replace (or append) the section `name` of the results file with `content`.
pub fn write_section(path: &Path, name: &str, content: &str) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    std::fs::write(path, with_section(&existing, name, content))
}

pub fn with_section(existing: &str, name: &str, content: &str) -> String {
    let (start, end) = (format!("<!-- section:{name} -->"), format!("<!-- /section:{name} -->"));
    let block = format!("{start}\n{}\n{end}", content.trim_end());
    let base = if existing.starts_with("# Results") && existing.contains("<!-- section:") { existing.to_string() } else { HEADER.to_string() };
    match (base.find(&start), base.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &base[..a], &base[b + end.len()..]),
        _ => format!("{}\n{block}\n", base.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place_and_others_kept() {
        let one = with_section("", "a", "first A");
        let two = with_section(&one, "b", "first B");
        let three = with_section(&two, "a", "second A");
        assert!(three.starts_with("# Results"));
        assert!(three.contains("second A") && !three.contains("first A") && three.contains("first B"));
        assert!(three.find("second A").unwrap() < three.find("first B").unwrap(), "order kept");
        assert_eq!(with_section(&three, "a", "second A"), three, "idempotent");
    }
}
