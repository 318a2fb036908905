//! qmail-send's retry schedule.
//!
//! Each message is retried on a quadratic schedule measured from its birth:
//! after an attempt at time `now` defers, the next is at
//! `birth + (floor(sqrt(now - birth)) + c)²`, with `c` = 10 for local and 20
//! for remote deliveries. Local deliveries are thus tried at about 0, 100,
//! 400, 900, 1600 … seconds, remote ones at 0, 400, 1600, 3600 … seconds.
//! A recipient whose attempt starts after `queuelifetime` has passed and
//! still defers is bounced.

use crate::queue::Channel;

/// qmail's `chanskip`: the schedule's constant per channel.
pub fn channel_skip(ch: Channel) -> u64 {
    match ch {
        Channel::Local => 10,
        Channel::Remote => 20,
    }
}

/// The time of the next attempt after one that deferred at `now`.
pub fn next_retry(birth: u64, now: u64, ch: Channel) -> u64 {
    let n = isqrt(now.saturating_sub(birth)) + channel_skip(ch);
    birth.saturating_add(n.saturating_mul(n))
}

/// Whether an attempt starting at `now` is the message's last: its deferral
/// becomes a bounce.
pub fn is_dying(birth: u64, now: u64, queuelifetime: u64) -> bool {
    now >= birth.saturating_add(queuelifetime)
}

/// The schedule a message that always defers would follow: the times of
/// its attempts (relative to birth) up to and including the first that
/// starts after `queuelifetime`, each attempt made exactly on time.
pub fn lifetime_schedule(ch: Channel, queuelifetime: u64) -> Vec<u64> {
    let mut times = vec![0];
    let mut now = 0;
    while !is_dying(0, now, queuelifetime) {
        now = next_retry(0, now, ch);
        times.push(now);
    }
    times
}

/// Integer square root (floor).
fn isqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    // Newton's method from an over-estimate; converges from above.
    let mut x = 1u64 << (64 - n.leading_zeros()).div_ceil(2);
    loop {
        let y = (x + n / x) / 2;
        if y >= x {
            return x;
        }
        x = y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn first_retries_are_qmails() {
        let l: Vec<u64> = lifetime_schedule(Channel::Local, 604_800)[..6].to_vec();
        assert_eq!(l, [0, 100, 400, 900, 1600, 2500]);
        let r: Vec<u64> = lifetime_schedule(Channel::Remote, 604_800)[..5].to_vec();
        assert_eq!(r, [0, 400, 1600, 3600, 6400]);
    }

    #[test]
    fn whole_lifetime_schedules() {
        let show = |ch| {
            lifetime_schedule(ch, 604_800)
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        insta::assert_snapshot!(
            "retry_schedule_7_days",
            format!(
                "local:  {}\nremote: {}\n",
                show(Channel::Local),
                show(Channel::Remote)
            )
        );
    }

    #[test]
    fn a_late_attempt_is_scheduled_from_where_it_happened() {
        // Attempted at 1000 s instead of 900: the next slot is (31+10)².
        assert_eq!(next_retry(5000, 6000, Channel::Local), 5000 + 41 * 41);
        // A clock before the birth (set back) retries at the first slot.
        assert_eq!(next_retry(5000, 10, Channel::Remote), 5400);
    }

    proptest! {
        #[test]
        fn isqrt_is_the_floor_square_root(n in any::<u64>()) {
            let r = isqrt(n) as u128;
            prop_assert!(r * r <= n as u128);
            prop_assert!((r + 1) * (r + 1) > n as u128);
        }

        #[test]
        fn the_next_retry_is_always_in_the_future(
            birth in 0u64..1u64 << 40,
            age in 0u64..1u64 << 30,
            remote in any::<bool>(),
        ) {
            let ch = if remote { Channel::Remote } else { Channel::Local };
            let now = birth + age;
            let next = next_retry(birth, now, ch);
            prop_assert!(next > now);
            // and at most one step of the schedule away: with s = ⌊√age⌋,
            // age ≥ s², so the gap is at most (s+c)² − s² = c(2s+c).
            let (s, c) = (isqrt(age), channel_skip(ch));
            prop_assert!(next - now <= c * (2 * s + c));
        }
    }
}
