//! RFC 3339 times, written and read fast.
//!
//! Every envelope carries a time and most payloads another, so a transformer formats and parses
//! several per event. chrono's serde goes through `core::fmt` and a general parser, which cost a
//! small translation a fifth of its time (callgrind). These do the common shape by hand,
//! `YYYY-MM-DDTHH:MM:SS[.fraction]Z` with 0, 3, 6 or 9 fraction digits exactly as chrono writes it,
//! and hand anything else (offsets, other years) to chrono, so what is accepted and what is written
//! does not change. Use with `#[serde(with = "busline::time::rfc3339")]` (or `rfc3339_option`).

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, SecondsFormat, Timelike, Utc};

/// Writes `t` as chrono's serde would (`SecondsFormat::AutoSi`, `Z`).
#[expect(
    clippy::indexing_slicing,
    reason = "a fixed 30-byte buffer, written at fixed places of at most 30 bytes in all"
)]
pub fn format(t: &DateTime<Utc>) -> String {
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    }
    let mut out = [0u8; 30];
    let mut put = |at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, t.second(), 2);
    let digits = if nanos == 0 {
        0
    } else if nanos % 1_000_000 == 0 {
        put(20, nanos / 1_000_000, 3);
        3
    } else if nanos % 1_000 == 0 {
        put(20, nanos / 1_000, 6);
        6
    } else {
        put(20, nanos, 9);
        9
    };
    for (at, b) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        out[at] = b;
    }
    let mut len = 19;
    if digits > 0 {
        out[19] = b'.';
        len = 20 + digits;
    }
    out[len] = b'Z';
    String::from_utf8_lossy(&out[..=len]).into_owned()
}

/// Reads an RFC 3339 time as chrono's serde would.
pub fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    fast_parse(text).map_or_else(|| text.parse(), Ok)
}

#[expect(
    clippy::indexing_slicing,
    reason = "fixed places below 20, and the text is checked to be at least 20 bytes long"
)]
fn fast_parse(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        b.get(from..to)?.iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            number(20, 20 + digits.len())? * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 7)?, number(8, 10)?)?;
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if second > 59 {
        return None; // a leap second: chrono's parser knows what to do with it
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// `#[serde(with = "busline::time::rfc3339")]` for a `DateTime<Utc>`.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the time.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(t))
    }

    /// Reads the time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "busline::time::rfc3339_option")]` for an `Option<DateTime<Utc>>`.
pub mod rfc3339_option {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the time, or `null`.
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::format(t)),
            None => s.serialize_none(),
        }
    }

    /// Reads the time, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?
            .map(|text| super::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn writes_exactly_what_chrono_writes_and_reads_it_back(
            seconds in -62_135_596_800i64..253_402_300_799,
            nanos in prop_oneof![Just(0u32), (0u32..1000).prop_map(|m| m * 1_000_000), (0u32..1_000_000).prop_map(|u| u * 1000), 0u32..1_000_000_000],
        ) {
            let t = DateTime::from_timestamp(seconds, nanos).unwrap();
            let text = format(&t);
            prop_assert_eq!(&text, &t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            prop_assert_eq!(parse(&text).unwrap(), t);
            prop_assert_eq!(fast_parse(&text), Some(t));
        }

        #[test]
        fn reads_whatever_chrono_reads_and_refuses_what_it_refuses(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,10})?(Z|z|[+-][0-9]{2}:[0-9]{2})") {
            let ours = parse(&text).ok();
            let chrono = text.parse::<DateTime<Utc>>().ok();
            prop_assert_eq!(ours, chrono);
        }
    }

    #[test]
    fn the_odd_shapes_go_to_chrono() {
        for text in [
            "2026-11-24T10:15:30+01:00",
            "2026-11-24 10:15:30Z",
            "2016-12-31T23:59:60Z",
            "2026-02-30T10:15:30Z",
            "2026-11-24T10:15:30.Z",
            "garbage",
            "",
        ] {
            assert_eq!(
                parse(text).ok(),
                text.parse::<DateTime<Utc>>().ok(),
                "{text:?}"
            );
        }
    }
}
