//! The scenarios. Each is bounded in count and in time and stops by itself; each returns a
//! [`Report`](crate::report::Report) whose checks decide the exit code.

pub mod bookings;
pub mod connections;
pub mod fanout;
pub mod flamegraph;
pub mod payments;
pub mod reference;
pub mod reference_bookings;
pub mod reference_connections;
pub mod reference_fanout;
pub mod resume;
pub mod summarize;

use protocol::Codec;

use crate::target::Target;

/// What every scenario that drives the node needs.
#[derive(Debug, Clone)]
pub struct Common {
    pub target: Target,
    pub codec: Codec,
    /// Requests in flight while setting up (registering users, depositing, connecting).
    pub setup_concurrency: usize,
    /// Use the scenario's seconds-long preset instead of its arguments.
    pub smoke: bool,
}

impl Common {
    pub fn codec_name(&self) -> &'static str {
        match self.codec {
            Codec::Json => "json",
            Codec::MsgPack => "msgpack",
        }
    }
}

/// Microseconds since a process-wide origin: what a client writes into a message and reads
/// back on delivery, in the same process, so on the same clock.
pub fn micros_since_origin() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Content of a load-test message: a marker, the run, the sender, its post number and the
/// client's send instant, so a receiver can attribute and time every delivery.
pub fn stamp(run: &str, sender: usize, n: u64, sent_us: u64) -> String {
    format!("lt|{run}|{sender}|{n}|{sent_us}")
}

/// The parts of a [`stamp`]ed content: (run, sender, post number, send instant in µs).
pub fn parse_stamp(content: &str) -> Option<(&str, usize, u64, u64)> {
    let mut parts = content.split('|');
    if parts.next()? != "lt" {
        return None;
    }
    let run = parts.next()?;
    let sender = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((run, sender, n, sent_us))
}

/// Gaps and duplicates in a sequence of `seq`s that should be `first, first+1, …`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SeqAudit {
    pub received: u64,
    /// Times a `seq` skipped ahead (one missing run counts once).
    pub gaps: u64,
    /// `seq`s at or below one already received.
    pub duplicates: u64,
    pub last: Option<u64>,
}

impl SeqAudit {
    /// An audit expecting the next `seq` after `last_seen` (0 when nothing was seen).
    pub fn after(last_seen: u64) -> Self {
        SeqAudit {
            last: Some(last_seen),
            ..SeqAudit::default()
        }
    }

    pub fn see(&mut self, seq: u64) {
        self.received += 1;
        match self.last {
            Some(last) if seq <= last => {
                self.duplicates += 1;
                return;
            }
            Some(last) if seq > last + 1 => self.gaps += 1,
            _ => {}
        }
        self.last = Some(seq);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_others_are_ignored() {
        let content = stamp("lt42", 7, 19, 123_456);
        assert_eq!(parse_stamp(&content), Some(("lt42", 7, 19, 123_456)));
        assert_eq!(parse_stamp("hello"), None);
        assert_eq!(parse_stamp("lt|r|x|1|2"), None);
        assert_eq!(parse_stamp("lt|r|1|1|2|extra"), None);
    }

    #[test]
    fn seq_audits_count_gaps_and_duplicates() {
        let mut audit = SeqAudit::after(10);
        for seq in [11, 12, 12, 15, 16, 14, 17] {
            audit.see(seq);
        }
        assert_eq!(audit.received, 7);
        assert_eq!(audit.duplicates, 2, "12 again and 14 after 16");
        assert_eq!(audit.gaps, 1, "13 and 14 missing");
        assert_eq!(audit.last, Some(17));

        let mut clean = SeqAudit::after(0);
        (1..=100).for_each(|s| clean.see(s));
        assert_eq!((clean.gaps, clean.duplicates), (0, 0));
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = micros_since_origin();
        let b = micros_since_origin();
        assert!(b >= a);
    }
}
