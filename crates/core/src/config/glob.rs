//! Glob patterns for `when` conditions: pod names, namespaces, container
//! names, image references and annotation values.
//!
//! The grammar is the one the embedded `vault` source uses for its `allow`
//! list, so an operator learns one: `*` matches any run of characters
//! within one `/`-separated segment, `**` any run across segments, `?` one
//! character other than `/`; everything else matches itself. There is no
//! escape and no character class: none of the names it is used on may
//! contain `*` or `?`.
//!
//! Matching is a dynamic program over (pattern, text), linear in memory and
//! `pattern × text` in time, so no pattern backtracks exponentially. Text
//! longer than [`MAX_TEXT`] never matches: every name it is applied to is
//! far shorter, and a condition that cannot be evaluated must not grant.

/// Longest text a pattern is matched against, in characters.
pub const MAX_TEXT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    One,
    /// `*`
    Segment,
    /// `**`
    Any,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(match c {
            '*' if chars.peek() == Some(&'*') => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                Token::Any
            }
            '*' => Token::Segment,
            '?' => Token::One,
            c => Token::Literal(c),
        });
    }
    out
}

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    if text.len() > MAX_TEXT {
        return false;
    }
    // row[j]: the tokens so far match text[..j].
    let mut row = vec![false; text.len() + 1];
    row[0] = true;
    for t in tokens(pattern) {
        let mut next = vec![false; text.len() + 1];
        match t {
            Token::Literal(c) => {
                for j in 0..text.len() {
                    next[j + 1] = row[j] && text[j] == c;
                }
            }
            Token::One => {
                for j in 0..text.len() {
                    next[j + 1] = row[j] && text[j] != '/';
                }
            }
            Token::Segment => {
                next[0] = row[0];
                for j in 1..=text.len() {
                    next[j] = row[j] || (next[j - 1] && text[j - 1] != '/');
                }
            }
            Token::Any => {
                next[0] = row[0];
                for j in 1..=text.len() {
                    next[j] = row[j] || next[j - 1];
                }
            }
        }
        row = next;
    }
    row[text.len()]
}

/// Whether `pattern` has any glob character.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_stays_in_a_segment_and_double_star_crosses() {
        let p = "registry.example.com/payments/*";
        assert!(matches(p, "registry.example.com/payments/api:1.2"));
        assert!(matches(p, "registry.example.com/payments/api@sha256:ab12"));
        assert!(!matches(p, "registry.example.com/payments/team/api:1"));
        assert!(!matches(p, "registry.example.com/paymentsx/api:1"));
        assert!(!matches(
            p,
            "evil.example.com/registry.example.com/payments/api"
        ));
        assert!(matches(
            "registry.example.com/payments/**",
            "registry.example.com/payments/team/api:1"
        ));
        assert!(matches("**", "a/b/c"));
        assert!(!matches("*", "a/b"));
        assert!(matches("*", ""));
    }

    #[test]
    fn names_match_whole_never_by_prefix_or_suffix() {
        assert!(matches("payments", "payments"));
        assert!(!matches("payments", "payments-dev"));
        assert!(!matches("payments", "xpayments"));
        assert!(matches("team-*", "team-a"));
        assert!(!matches("team-*", "team"));
        assert!(matches("web-?", "web-1"));
        assert!(!matches("web-?", "web-12"));
        assert!(matches("*-prod", "billing-prod"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(!matches("a*b*c", "aXbY"));
    }

    #[test]
    fn long_or_adversarial_text_does_not_blow_up_and_too_long_never_matches() {
        let text = "a".repeat(super::MAX_TEXT);
        let pattern = "*a".repeat(60) + "b";
        let t = std::time::Instant::now();
        assert!(!matches(&pattern, &text));
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        assert!(!matches("**", &"a".repeat(super::MAX_TEXT + 1)));
    }
}
