use super::*;

#[test]
fn clip_is_char_safe_and_marks_the_cut() {
    let c = clip("é".repeat(1000));
    assert_eq!(c.chars().count(), MAX_MESSAGE);
    assert!(c.ends_with('…'));
    assert_eq!(clip("short"), "short");
    assert_eq!(clip_to("abcdef", 4), "abc…");
}

#[test]
fn the_suffix_survives_clipping() {
    let m = clip_keeping(&"x".repeat(2 * MAX_MESSAGE), " (record: r)");
    assert_eq!(m.chars().count(), MAX_MESSAGE);
    assert!(m.ends_with("… (record: r)"), "{m}");
}

#[test]
fn lists_show_the_first_few_and_count_the_rest() {
    assert_eq!(first_and_more(["a", "b"]), "a; b");
    assert_eq!(first_and_more(0..10), "0; 1; 2; and 7 more");
    assert_eq!(first_and_more(Vec::<String>::new()), "");
}

#[test]
fn clip_bytes_bounds_the_stored_size_on_a_char_boundary() {
    assert_eq!(clip_bytes("short", 160), "short");
    let c = clip_bytes(&"é".repeat(200), 160);
    assert!(c.len() <= 160, "{}", c.len());
    assert!(c.ends_with('…'));
    assert_eq!(c.len(), 157 + 2, "78 two-byte chars and the three-byte mark");
    assert_eq!(clip_bytes("abcdef", 4), "a…");
}
