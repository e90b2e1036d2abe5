//! Laggards of an understood stream skip instead of being closed: a receiver that
//! falls out of the lag window first gets the rest of the group it is in (up to
//! the next join point), then media from the newest join point — whole Clusters
//! or `moof`+`mdat` only, so it keeps decoding with a jump in time.
//!
//! An understood stream's log holds twice the window, so that a receiver that just
//! fell out of it still finds the rest of its group. Pure: the clock is a parameter.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{ChunkLog, Lagged};

/// What `LAGGING_RECEIVERS` asks for a receiver more than `RECEIVER_QUEUE_MB` behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LaggingReceivers {
    /// Skip to the newest join point when the container is understood, else close.
    #[default]
    Skip,
    /// Close with 1008 (the original's behaviour).
    Close,
}

impl LaggingReceivers {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Close => "close",
        }
    }
}

/// A receiver that would skip again within this long is closed instead: it can never keep up.
pub(crate) const SKIP_AGAIN_WITHIN: Duration = Duration::from_secs(60);
/// How long a planned skip may wait for its writer (stuck in a write the kernel's send
/// buffer hides) before the receiver is closed instead.
pub(crate) const HAND_OUT_WITHIN: Duration = Duration::from_secs(20);

/// Where a lagging receiver goes: `tail` then `media` are its next messages, then
/// chunks from `cursor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skip {
    /// The rest of its current group, up to the next join point (may be empty).
    pub tail: Vec<Bytes>,
    /// Media from the newest join point to the end of that join point's chunk.
    pub media: Bytes,
    pub cursor: u64,
    /// Stream bytes it never gets.
    pub skipped_bytes: u64,
    /// Accounted offset of the join point it skips to.
    joined_at: u64,
}

/// Why a lagging receiver cannot skip; it is closed with 1008 then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NoSkip {
    #[error("stream not understood (no join points)")]
    Opaque,
    #[error("the rest of its group is no longer held")]
    TailGone,
    #[error("no newer join point")]
    NoNewerJoin,
    #[error("the newest join point is itself over the bound")]
    JoinTooOld,
}

impl NoSkip {
    pub(crate) fn cause(self) -> &'static str {
        match self {
            Self::Opaque => "opaque stream",
            Self::TailGone => "its group is no longer held",
            Self::NoNewerJoin => "no newer join point",
            Self::JoinTooOld => "newest join point over the bound",
        }
    }
}

impl ChunkLog {
    /// The skip of a receiver whose next chunk is `cursor`, if it has somewhere to go:
    /// never to a cut group, never past the head, never still over the bound.
    pub(crate) fn skip(&self, cursor: u64) -> Result<Skip, NoSkip> {
        if self.init.is_none() {
            return Err(NoSkip::Opaque);
        }
        if cursor < self.base_seq {
            return Err(NoSkip::TailGone);
        }
        let first = self.joins.partition_point(|seq| *seq < cursor);
        let (Some(&end), Some(&newest)) = (self.joins.get(first), self.joins.back()) else {
            return Err(NoSkip::NoNewerJoin);
        };
        if newest <= end {
            return Err(NoSkip::NoNewerJoin);
        }
        let (end_entry, newest_entry) = match (self.entry(end), self.entry(newest)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(NoSkip::TailGone),
        };
        let (end_join, newest_join) = (end_entry.join.unwrap_or(0), newest_entry.join.unwrap_or(0));
        if self.check_lag(newest + 1).is_err() {
            return Err(NoSkip::JoinTooOld);
        }
        let mut tail = self.range(cursor, end);
        if end_join > 0 {
            tail.push(end_entry.bytes.slice(..end_join));
        }
        let from = end_entry.start + end_join as u64;
        let to = newest_entry.start + newest_join as u64;
        Ok(Skip {
            tail,
            media: newest_entry.bytes.slice(newest_join..),
            cursor: newest + 1,
            skipped_bytes: to - from,
            joined_at: to,
        })
    }

    /// Moves a planned skip that its writer has not handed out yet (and that fell out
    /// of the window meanwhile) to the newest join point; its tail is kept. Never to a
    /// join point still over the bound, never backwards.
    pub(crate) fn retarget(&self, skip: &mut Skip) -> Result<(), NoSkip> {
        let Some(&newest) = self.joins.back() else {
            return Err(NoSkip::NoNewerJoin);
        };
        if newest < skip.cursor {
            return Err(NoSkip::NoNewerJoin);
        }
        let entry = self.entry(newest).ok_or(NoSkip::TailGone)?;
        if self.check_lag(newest + 1).is_err() {
            return Err(NoSkip::JoinTooOld);
        }
        let join = entry.join.unwrap_or(0);
        let to = entry.start + join as u64;
        skip.skipped_bytes += to.saturating_sub(skip.joined_at);
        skip.media = entry.bytes.slice(join..);
        skip.cursor = newest + 1;
        skip.joined_at = to;
        Ok(())
    }

    /// Whether the chunk ending at accounted offset `front_end` (out of the window) is
    /// kept anyway: on an understood stream the log holds twice the window, so that a
    /// receiver that just fell out of it still finds the rest of its group.
    pub(super) fn finishes_a_group(&self, front_end: u64) -> bool {
        self.init.is_some() && self.head_acc - front_end <= 2 * self.receiver_queue_bytes
    }
}

/// One receiver's skips: the first is allowed, another within [`SKIP_AGAIN_WITHIN`] is not.
#[derive(Debug, Default)]
pub(crate) struct SkipHistory {
    last: Option<Instant>,
}

impl SkipHistory {
    /// Records a skip at `now`; false (nothing recorded) when the previous one was too recent.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < SKIP_AGAIN_WITHIN)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Decides what becomes of a receiver at `cursor` that `lagged`: its skip, or why it is closed.
pub(crate) fn decide(
    log: &ChunkLog,
    mode: LaggingReceivers,
    history: &mut SkipHistory,
    cursor: u64,
    lagged: Lagged,
    now: Instant,
) -> Result<Skip, Lagged> {
    if mode == LaggingReceivers::Close {
        return Err(lagged);
    }
    let skip = log.skip(cursor).map_err(|e| lagged.because(e.cause()))?;
    if !history.allow(now) {
        return Err(lagged.because("skipped again within a minute"));
    }
    Ok(skip)
}

#[cfg(test)]
mod tests;
