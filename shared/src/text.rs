//! Text that must fit a size: reasons in message attributes, excerpts of a peer's answer.

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary, so a
/// reason cut to fit never splits a UTF-8 sequence.
pub fn truncated(text: &str, max: usize) -> &str {
    text.get(..text.floor_char_boundary(max)).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::truncated;

    #[test]
    fn cuts_on_a_character_boundary_and_never_past_the_end() {
        assert_eq!(truncated("grüße", 3), "gr");
        assert_eq!(truncated("grüße", 4), "grü");
        assert_eq!(truncated("abc", 10), "abc");
        assert_eq!(truncated("", 0), "");
    }
}
