//! Dates as qmail writes them: `25 Nov 2026 03:06:23 -0000` (RFC 822, always
//! UTC), from unix seconds. Pure arithmetic, no time zone database.

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time broken down from unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Civil {
    pub fn from_unix(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `25 Nov 2026 03:06:23` (day without leading zero, as qmail's date822fmt).
    pub fn qmail_datetime(&self) -> String {
        format!(
            "{} {} {} {:02}:{:02}:{:02}",
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }
}

/// `Wed Nov 25 03:06:23 2026` (UTC, asctime's layout), as the `From ` line
/// of an mbox has it.
pub fn ctime(secs: u64) -> String {
    // 1 Jan 1970 was a Thursday.
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let c = Civil::from_unix(secs);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} {}",
        DAYS[((secs / 86_400) % 7) as usize],
        MONTHS[(c.month - 1) as usize],
        c.day,
        c.hour,
        c.minute,
        c.second,
        c.year
    )
}

/// The date qmail puts in Received and Date lines: `25 Nov 2026 03:06:23 -0000`.
pub fn rfc822(secs: u64) -> String {
    format!("{} -0000", Civil::from_unix(secs).qmail_datetime())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        // From qmail-observed: 1795575983 is 25 Nov 2026 03:06:23 UTC.
        assert_eq!(rfc822(1_795_575_983), "25 Nov 2026 03:06:23 -0000");
        assert_eq!(rfc822(0), "1 Jan 1970 00:00:00 -0000");
        assert_eq!(rfc822(951_782_400), "29 Feb 2000 00:00:00 -0000");
        assert_eq!(rfc822(4_102_444_799), "31 Dec 2099 23:59:59 -0000");
        assert_eq!(ctime(1_795_575_983), "Wed Nov 25 03:06:23 2026");
        assert_eq!(ctime(0), "Thu Jan 01 00:00:00 1970");
    }

    proptest::proptest! {
        #[test]
        fn fields_in_range(s in 0u64..10_000_000_000) {
            let c = Civil::from_unix(s);
            proptest::prop_assert!((1..=12).contains(&c.month) && (1..=31).contains(&c.day));
            proptest::prop_assert!(c.hour < 24 && c.minute < 60 && c.second < 60);
        }
    }
}
