//! The tmt duration grammar (`tmt.utils.duration_to_seconds`, spec
//! fmf-tmt.md section B): `5m`, `1h 30m`, `*2`, `1m30s` and friends.
//!
//! tmt validates the string with a backtracking regular expression and then
//! sums the tokens. This module parses the same language with a hand-written
//! scanner: after tmt's pre-processing (a space is inserted between a unit and
//! a following digit, and whitespace runs of two or more collapse to one
//! space), every token's end is determined without backtracking, so one
//! left-to-right pass both validates and sums.
//!
//! Deviations from python tmt, on purpose:
//! - Only ASCII digits are digits. Python's `\d` also accepts other Unicode
//!   decimal digits (`٥m`); such strings are invalid here.
//! - A value that does not fit in a `u64` of seconds is an error
//!   ([`DurationError::TooLarge`]); Python returns an arbitrarily large int
//!   (or crashes on an infinite float).

/// The duration of a test that does not set one, and the default injected by
/// tmt's execute step when a duration sums to zero (`5m`).
pub const DEFAULT_TEST_DURATION: u64 = 300;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is not in the duration grammar (tmt: `Invalid duration
    /// '<s>'.`).
    #[error("invalid duration '{input}'")]
    Invalid {
        /// The string as given.
        input: String,
    },
    /// The string is valid but its value does not fit in `u64` seconds.
    #[error("duration '{input}' is too large")]
    TooLarge {
        /// The string as given.
        input: String,
    },
}

/// Seconds of a duration string, exactly as tmt computes it without an
/// injected default.
///
/// ```
/// use atex_shared::duration::parse_duration;
/// assert_eq!(parse_duration("5m"), Ok(300));
/// assert_eq!(parse_duration("1h 30"), Ok(3630));
/// assert_eq!(parse_duration("*3 2s *4"), Ok(24));
/// assert_eq!(parse_duration("*2"), Ok(0));
/// assert!(parse_duration("1.5h").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<u64, DurationError> {
    compute(s, None)
}

/// Seconds of a duration string, where a sum of zero is replaced by
/// `default_seconds` before the multipliers apply (tmt's execute step injects
/// `5m`, [`DEFAULT_TEST_DURATION`]).
///
/// ```
/// use atex_shared::duration::{parse_duration_with_default, DEFAULT_TEST_DURATION};
/// assert_eq!(parse_duration_with_default("*2", DEFAULT_TEST_DURATION), Ok(600));
/// assert_eq!(parse_duration_with_default("0", DEFAULT_TEST_DURATION), Ok(300));
/// assert_eq!(parse_duration_with_default("10s", DEFAULT_TEST_DURATION), Ok(10));
/// ```
pub fn parse_duration_with_default(s: &str, default_seconds: u64) -> Result<u64, DurationError> {
    compute(s, Some(default_seconds))
}

/// A token of the grammar, as the scanner found it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    /// Digits with an optional unit: seconds to add.
    Time(u128),
    /// `*N` or `*N.M`: a factor to multiply by.
    Factor(f64),
}

fn compute(input: &str, default: Option<u64>) -> Result<u64, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_owned(),
    };
    let too_large = || DurationError::TooLarge {
        input: input.to_owned(),
    };
    let chars = preprocess(input);
    let tokens = scan(&chars).ok_or_else(invalid)?;

    let mut total: u128 = 0;
    let mut factor = 1.0_f64;
    for token in tokens {
        match token {
            Token::Time(seconds) => total = total.checked_add(seconds).ok_or_else(too_large)?,
            Token::Factor(f) => factor *= f,
        }
    }
    if let Some(default) = default
        && total == 0
    {
        total = u128::from(default);
    }
    // Python computes `ceil(int * float)`: the int becomes a float first
    // (round to nearest), even when there is no multiplier.
    #[expect(
        clippy::cast_precision_loss,
        reason = "python converts the sum to a float the same way"
    )]
    let product = (total as f64 * factor).ceil();
    if !product.is_finite() || product < 0.0 || product >= u64::MAX as f64 {
        return Err(too_large());
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "range checked above"
    )]
    Ok(product as u64)
}

/// Python's `str.isspace()` set, which is what `\s` matches in tmt's regex:
/// Unicode whitespace plus the separators U+001C..U+001F.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn is_unit(c: char) -> bool {
    matches!(c, 's' | 'm' | 'h' | 'd')
}

/// tmt's pre-processing: `re.sub(r'([smhd])(\d)', r'\1 \2', s)`, then
/// `re.sub(r'\s\s+', ' ', s)`.
fn preprocess(input: &str) -> Vec<char> {
    let raw: Vec<char> = input.chars().collect();
    let mut spaced = Vec::with_capacity(raw.len() + 4);
    for (i, &c) in raw.iter().enumerate() {
        spaced.push(c);
        if is_unit(c) && raw.get(i + 1).is_some_and(char::is_ascii_digit) {
            spaced.push(' ');
        }
    }
    let mut out = Vec::with_capacity(spaced.len());
    let mut i = 0;
    while i < spaced.len() {
        let c = spaced[i];
        if is_py_space(c) {
            let mut j = i;
            while j < spaced.len() && is_py_space(spaced[j]) {
                j += 1;
            }
            // A single whitespace character stays as it is; a run becomes ' '.
            out.push(if j - i >= 2 { ' ' } else { c });
            i = j;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Split the pre-processed string into tokens; `None` if it is not in the
/// grammar.
///
/// Why no backtracking is needed: whitespace runs are at most one character
/// long after pre-processing; digit runs must be maximal (a shorter run would
/// be followed by a digit, and `\b` fails between two digits); and a token
/// that can lead to a full match always ends after its core plus one optional
/// whitespace character. The core must not be followed directly by a word
/// character, which is the regex's `\b`.
fn scan(s: &[char]) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut i = 0;
    let at = |i: usize| s.get(i).copied();
    while i < s.len() {
        let token = if at(i) == Some('*') {
            i += 1;
            if at(i).is_some_and(is_py_space) {
                i += 1;
            }
            let start = i;
            i = skip_digits(s, i);
            if i == start {
                return None;
            }
            if at(i) == Some('.') && at(i + 1).is_some_and(|c| c.is_ascii_digit()) {
                i = skip_digits(s, i + 1);
            }
            // `(?![smhd])`: with or without the fraction, a unit here leaves
            // no way to finish the token or the next one.
            if at(i).is_some_and(is_unit) {
                return None;
            }
            let text: String = s[start..i].iter().collect();
            Token::Factor(text.parse().ok()?)
        } else if at(i).is_some_and(|c| c.is_ascii_digit()) {
            let start = i;
            i = skip_digits(s, i);
            let digits: String = s[start..i].iter().collect();
            let value: u128 = digits.parse().ok()?;
            let mut unit = 1;
            // `\s*[smhd]?`: the whitespace belongs to the time only when a
            // unit follows it; otherwise it is the token's trailing space.
            let unit_at = if at(i).is_some_and(is_py_space) {
                i + 1
            } else {
                i
            };
            if let Some(c) = at(unit_at).filter(|&c| is_unit(c)) {
                unit = match c {
                    'm' => 60,
                    'h' => 3600,
                    'd' => 86_400,
                    _ => 1,
                };
                i = unit_at + 1;
            }
            Token::Time(value.checked_mul(unit)?)
        } else {
            return None;
        };
        // `\b`: the core ends in a word character (digit or unit), so the
        // next character must not be one; whitespace, `*` and the end are
        // fine, and anything else cannot start the next token anyway.
        match at(i) {
            None => {}
            Some(c) if is_py_space(c) => i += 1,
            Some('*') => {}
            Some(_) => return None,
        }
        tokens.push(token);
    }
    if tokens.is_empty() {
        None
    } else {
        Some(tokens)
    }
}

fn skip_digits(s: &[char], mut i: usize) -> usize {
    while s.get(i).is_some_and(char::is_ascii_digit) {
        i += 1;
    }
    i
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The examples table of fmf-tmt.md section B, with `(default)` rows
    /// using the injected 5m default.
    #[test]
    fn spec_examples() {
        let plain = [
            ("5m", 300),
            ("1h 3h 2m 3", 14523),
            ("*3 2s *4", 24),
            ("5m*2", 600),
            ("1m30s", 90),
            ("1h30", 3630),
            ("5 m", 300),
            ("*0.9 5m", 270),
        ];
        for (input, want) in plain {
            assert_eq!(parse_duration(input), Ok(want), "{input:?}");
            assert_eq!(
                parse_duration_with_default(input, DEFAULT_TEST_DURATION),
                Ok(want),
                "{input:?}"
            );
        }
        assert_eq!(parse_duration_with_default("*2", 300), Ok(600));
        assert_eq!(parse_duration_with_default("0", 300), Ok(300));
        assert_eq!(parse_duration("*2"), Ok(0));
        assert_eq!(parse_duration("0"), Ok(0));
    }

    #[test]
    fn spec_invalid_inputs() {
        for input in ["1.5h", "5M", "  5m", "5m+", "5m*", "1e3", ""] {
            assert_eq!(
                parse_duration(input),
                Err(DurationError::Invalid {
                    input: input.to_owned()
                }),
                "{input:?}"
            );
            assert!(
                parse_duration_with_default(input, 300).is_err(),
                "{input:?}"
            );
        }
    }

    #[test]
    fn more_cases_checked_against_tmt_semantics() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1d", Some(86_400)),
            ("2 1m 4", Some(66)),
            ("5m ", Some(300)),
            ("5m\n", Some(300)),
            ("5\t m", Some(300)),
            ("* 2 5", Some(10)),
            ("5*2*3", Some(30)),
            ("10s *1.5", Some(15)),
            ("3s *0.5", Some(2)),
            ("5m5", Some(305)),
            (" 5m", None),
            ("5 ms", None),
            ("5mm", None),
            ("*2s", None),
            ("*2.5s", None),
            ("*", None),
            ("*1.", None),
            ("m", None),
            ("5_", None),
            ("٥m", None),
        ];
        for &(input, want) in cases {
            assert_eq!(parse_duration(input).ok(), want, "{input:?}");
        }
    }

    #[test]
    fn too_large_is_an_error_not_a_panic() {
        let huge = "99999999999999999999999999999999999999999999d";
        assert!(matches!(
            parse_duration(huge),
            Err(DurationError::TooLarge { .. }) | Err(DurationError::Invalid { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999d"),
            Err(DurationError::TooLarge { .. })
        ));
    }

    #[test]
    fn error_message_names_the_input() {
        let err = parse_duration("5M").unwrap_err();
        assert_eq!(err.to_string(), "invalid duration '5M'");
    }

    fn unit_strategy() -> impl Strategy<Value = (&'static str, u64)> {
        prop_oneof![
            Just(("", 1)),
            Just(("s", 1)),
            Just(("m", 60)),
            Just(("h", 3600)),
            Just(("d", 86_400)),
        ]
    }

    proptest! {
        #[test]
        fn sums_of_times_parse_to_their_total(
            parts in proptest::collection::vec((0u64..10_000, unit_strategy()), 1..6),
            sep in prop_oneof![Just(" "), Just("  "), Just("\t")],
        ) {
            let text: Vec<String> = parts.iter().map(|(n, (u, _))| format!("{n}{u}")).collect();
            let total: u64 = parts.iter().map(|(n, (_, m))| n * m).sum();
            prop_assert_eq!(parse_duration(&text.join(sep)), Ok(total));
        }

        #[test]
        fn integer_factors_multiply(n in 1u64..1000, k in 1u64..10) {
            prop_assert_eq!(parse_duration(&format!("{n}m *{k}")), Ok(n * 60 * k));
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,20}") {
            let _ = parse_duration(&s);
            let _ = parse_duration_with_default(&s, 300);
        }

        #[test]
        fn grammar_alphabet_never_panics(s in "[0-9smhdM*. \t+]{0,12}") {
            if let Ok(v) = parse_duration(&s) {
                // a valid string stays valid with the default injected
                prop_assert!(parse_duration_with_default(&s, 300).is_ok());
                prop_assert!(v < u64::MAX);
            }
        }
    }
}
