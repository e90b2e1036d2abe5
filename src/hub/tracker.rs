//! Follows a session's container with the media scanner and turns its events
//! into [`MediaUpdate`]s for the chunk log: the init segment (copied once, it is
//! small) and join points. Runs on the publisher's path.

use bytes::{Bytes, BytesMut};

use super::log::MediaUpdate;
use crate::media::{Container, ScanEvent, Scanner};

/// Largest init segment kept; a larger one falls back to opaque bytes.
pub(super) const MAX_INIT_BYTES: usize = 1 << 20;

#[derive(Default)]
pub(super) struct MediaTracker {
    scanner: Scanner,
    /// The stream's first bytes, until the init segment is complete.
    prefix: Option<BytesMut>,
    done: bool,
    /// The layout could not be followed: opaque bytes from then on.
    failed: bool,
    events: Vec<ScanEvent>,
}

impl std::fmt::Debug for MediaTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaTracker")
            .field("container", &self.scanner.container())
            .field("done", &self.done)
            .finish()
    }
}

impl MediaTracker {
    pub(super) fn new() -> Self {
        Self {
            prefix: Some(BytesMut::new()),
            ..Self::default()
        }
    }

    /// Scans the next chunk of the stream.
    pub(super) fn observe(&mut self, chunk: &[u8]) -> MediaUpdate {
        let mut update = MediaUpdate::default();
        if self.done {
            return update;
        }
        if let Some(prefix) = self.prefix.as_mut() {
            let room = MAX_INIT_BYTES.saturating_sub(prefix.len());
            prefix.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        self.events.clear();
        self.scanner.feed(chunk, &mut self.events);
        for event in std::mem::take(&mut self.events) {
            match event {
                ScanEvent::InitComplete { len, segment_size } => {
                    match self.init_segment(len, segment_size) {
                        Some(init) => update.init = Some(init),
                        None => return self.fail(update, "init segment too large"),
                    }
                }
                ScanEvent::JoinPoint { offset } => update.joins.push(offset),
                ScanEvent::Error(reason) => return self.fail(update, &reason),
            }
        }
        if self.scanner.container() == Container::Opaque {
            self.done = true;
            self.prefix = None;
        }
        update
    }

    fn init_segment(&mut self, len: u64, size: Option<crate::media::SizeField>) -> Option<Bytes> {
        let prefix = self.prefix.take()?;
        let len = usize::try_from(len).ok().filter(|l| *l <= prefix.len())?;
        let mut init = prefix;
        init.truncate(len);
        if let Some(field) = size {
            field.make_unknown(&mut init);
        }
        Some(init.freeze())
    }

    /// The container as followed: `Opaque` once its layout could not be.
    pub(super) fn container(&self) -> Container {
        if self.failed {
            Container::Opaque
        } else {
            self.scanner.container()
        }
    }

    fn fail(&mut self, mut update: MediaUpdate, reason: &str) -> MediaUpdate {
        tracing::info!(container = ?self.scanner.container(), reason, "stream layout not followed: late joiners get the cache as is");
        self.done = true;
        self.failed = true;
        self.prefix = None;
        update.failed = true;
        update.init = None;
        update.joins.clear();
        update
    }
}
