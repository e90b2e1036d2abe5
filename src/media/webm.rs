//! WebM/Matroska grammar for the [`Walker`](super::walker::Walker).
//!
//! Rules: the init segment ends where the first Cluster starts. A Cluster is a
//! join point when its first block of a video track is a keyframe (SimpleBlock
//! flag 0x80, or a BlockGroup without ReferenceBlock); with no video track
//! (as declared by Tracks before the Cluster) every Cluster is a join point.
//! Clusters that are not join points are not reported. Only Segment and
//! Cluster may have unknown size. A second EBML header/Segment (chained
//! segments) is reported as an error.

use super::walker::{Action, Frame, Grammar, Header, Reason};
use super::{ScanEvent, SizeField};

/// EBML header magic (the EBML element ID).
pub(super) const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const SEEK_HEAD: u32 = 0x114D_9B74;
const INFO: u32 = 0x1549_A966;
const TRACKS: u32 = 0x1654_AE6B;
const CLUSTER: u32 = 0x1F43_B675;
const CUES: u32 = 0x1C53_BB6B;
const ATTACHMENTS: u32 = 0x1941_A469;
const CHAPTERS: u32 = 0x1043_A770;
const TAGS: u32 = 0x1254_C367;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK_GROUP: u32 = 0xA0;
const BLOCK: u32 = 0xA1;
const REFERENCE_BLOCK: u32 = 0xFB;

/// Maximum number of video tracks remembered.
const MAX_VIDEO_TRACKS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Master {
    Segment,
    Tracks,
    TrackEntry,
    Cluster,
    BlockGroup,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Leaf {
    TrackNumber,
    TrackType,
    SimpleBlock,
    Block,
}

/// State of the Cluster being scanned.
#[derive(Debug, Clone, Copy)]
struct ClusterState {
    offset: u64,
    decided: bool,
}

/// WebM-specific scanning state (all fixed-size).
#[derive(Debug, Default)]
pub(super) struct Webm {
    segment_seen: bool,
    segment_size: Option<SizeField>,
    init_done: bool,
    video_tracks: [u64; MAX_VIDEO_TRACKS],
    video_count: usize,
    entry_number: Option<u64>,
    entry_type: Option<u64>,
    cluster: Option<ClusterState>,
    group_track: Option<u64>,
    group_has_ref: bool,
}

/// Length of a vint from its first byte (1..=8), `None` for 0x00.
fn vint_len(first: u8) -> Option<usize> {
    (first != 0).then(|| first.leading_zeros() as usize + 1)
}

/// Value of the vint at the start of `buf` (marker removed) and its length.
fn read_vint(buf: &[u8]) -> Option<(u64, usize)> {
    let len = vint_len(*buf.first()?)?;
    let bytes = buf.get(..len)?;
    let mut v = u64::from(bytes[0]) & (0xFF >> len);
    for &b in &bytes[1..] {
        v = (v << 8) | u64::from(b);
    }
    Some((v, len))
}

fn read_uint(buf: &[u8]) -> u64 {
    buf.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// IDs that end an unknown-size Cluster (Segment children and top level).
fn is_segment_level(id: u32) -> bool {
    matches!(
        id,
        SEEK_HEAD | INFO | TRACKS | CLUSTER | CUES | ATTACHMENTS | CHAPTERS | TAGS
    ) || is_top_level(id)
}

fn is_top_level(id: u32) -> bool {
    id == EBML || id == SEGMENT
}

impl Webm {
    fn is_video(&self, track: u64) -> bool {
        self.video_tracks[..self.video_count].contains(&track)
    }

    /// Records the first video block of the current Cluster.
    fn on_block(&mut self, track: u64, keyframe: bool, out: &mut Vec<ScanEvent>) {
        if !self.is_video(track) {
            return;
        }
        if let Some(c) = self.cluster.as_mut().filter(|c| !c.decided) {
            c.decided = true;
            if keyframe {
                out.push(ScanEvent::JoinPoint { offset: c.offset });
            }
        }
    }

    fn start_cluster(&mut self, h: &Header, out: &mut Vec<ScanEvent>) {
        if !self.init_done {
            self.init_done = true;
            let segment_size = self.segment_size;
            out.push(ScanEvent::InitComplete {
                len: h.start,
                segment_size,
            });
        }
        let decided = self.video_count == 0;
        if decided {
            out.push(ScanEvent::JoinPoint { offset: h.start });
        }
        self.cluster = Some(ClusterState {
            offset: h.start,
            decided,
        });
    }

    fn top_level(&mut self, h: &Header) -> Result<Action<Master, Leaf>, Reason> {
        if self.segment_seen && is_top_level(h.id) {
            return Err("chained segments are not supported");
        }
        match (h.id, h.size) {
            (SEGMENT, size) => {
                self.segment_seen = true;
                self.segment_size = size.map(|_| SizeField {
                    offset: h.start + u64::from(h.len - h.size_width),
                    width: h.size_width,
                });
                Ok(Action::Enter(Master::Segment))
            }
            (_, Some(_)) => Ok(Action::Skip),
            (_, None) => Err("unknown-size top-level element"),
        }
    }

    fn in_segment(
        &mut self,
        h: &Header,
        out: &mut Vec<ScanEvent>,
    ) -> Result<Action<Master, Leaf>, Reason> {
        match h.id {
            CLUSTER => {
                self.start_cluster(h, out);
                Ok(Action::Enter(Master::Cluster))
            }
            TRACKS => Ok(Action::Enter(Master::Tracks)),
            _ => Ok(Action::Skip),
        }
    }

    fn in_cluster(&mut self, h: &Header) -> Action<Master, Leaf> {
        match h.id {
            SIMPLE_BLOCK => Action::Read(Leaf::SimpleBlock, 11),
            BLOCK_GROUP => {
                self.group_track = None;
                self.group_has_ref = false;
                Action::Enter(Master::BlockGroup)
            }
            _ => Action::Skip,
        }
    }

    fn in_block_group(&mut self, h: &Header) -> Action<Master, Leaf> {
        match h.id {
            BLOCK => Action::Read(Leaf::Block, 8),
            REFERENCE_BLOCK => {
                self.group_has_ref = true;
                Action::Skip
            }
            _ => Action::Skip,
        }
    }

    /// Remembers a finished TrackEntry if it is video (beyond
    /// `MAX_VIDEO_TRACKS` video tracks, extra ones are ignored).
    fn end_track_entry(&mut self) {
        if let (Some(number), Some(1)) = (self.entry_number, self.entry_type) {
            if !self.is_video(number) {
                if let Some(slot) = self.video_tracks.get_mut(self.video_count) {
                    *slot = number;
                    self.video_count += 1;
                }
            }
        }
    }
}

impl Grammar for Webm {
    type Master = Master;
    type Leaf = Leaf;

    fn header_need(buf: &[u8]) -> Result<usize, Reason> {
        let Some(&first) = buf.first() else {
            return Ok(1);
        };
        let id_len = vint_len(first)
            .filter(|&l| l <= 4)
            .ok_or("invalid EBML element ID")?;
        match buf.get(id_len) {
            None => Ok(id_len + 1),
            Some(&s) => Ok(id_len + vint_len(s).ok_or("invalid EBML size")?),
        }
    }

    fn parse_header(buf: &[u8]) -> Result<(u32, Option<u64>, u8), Reason> {
        let id_len =
            vint_len(*buf.first().ok_or("empty header")?).ok_or("invalid EBML element ID")?;
        let id = read_uint(buf.get(..id_len).ok_or("short header")?) as u32;
        let (size, width) =
            read_vint(buf.get(id_len..).unwrap_or_default()).ok_or("invalid EBML size")?;
        let all_ones = (1u64 << (7 * width)) - 1;
        Ok((id, (size != all_ones).then_some(size), width as u8))
    }

    fn ends_unknown(&self, master: Master, id: u32) -> bool {
        match master {
            Master::Cluster => is_segment_level(id),
            Master::Segment => is_top_level(id),
            _ => false,
        }
    }

    fn on_header(
        &mut self,
        parent: Option<Master>,
        h: &Header,
        out: &mut Vec<ScanEvent>,
    ) -> Result<Action<Master, Leaf>, Reason> {
        let action = match parent {
            None => return self.top_level(h),
            Some(Master::Segment) => self.in_segment(h, out)?,
            Some(Master::Tracks) if h.id == TRACK_ENTRY => {
                (self.entry_number, self.entry_type) = (None, None);
                Action::Enter(Master::TrackEntry)
            }
            Some(Master::TrackEntry) if h.id == TRACK_NUMBER => Action::Read(Leaf::TrackNumber, 8),
            Some(Master::TrackEntry) if h.id == TRACK_TYPE => Action::Read(Leaf::TrackType, 8),
            Some(Master::Cluster) => self.in_cluster(h),
            Some(Master::BlockGroup) => self.in_block_group(h),
            Some(_) => Action::Skip,
        };
        let unknown_ok = matches!(action, Action::Enter(Master::Cluster | Master::Segment));
        if h.size.is_none() && !unknown_ok {
            return Err("unknown size on an element that must have a known size");
        }
        if matches!(action, Action::Read(Leaf::TrackNumber | Leaf::TrackType, _))
            && h.size > Some(8)
        {
            return Err("unsigned integer element longer than 8 bytes");
        }
        Ok(action)
    }

    fn on_value(
        &mut self,
        leaf: Leaf,
        data: &[u8],
        out: &mut Vec<ScanEvent>,
    ) -> Result<(), Reason> {
        match leaf {
            Leaf::TrackNumber => self.entry_number = Some(read_uint(data)),
            Leaf::TrackType => self.entry_type = Some(read_uint(data)),
            Leaf::SimpleBlock => {
                let (track, n) = read_vint(data).ok_or("truncated SimpleBlock header")?;
                let flags = *data.get(n + 2).ok_or("truncated SimpleBlock header")?;
                self.on_block(track, flags & 0x80 != 0, out);
            }
            Leaf::Block => {
                let (track, _) = read_vint(data).ok_or("truncated Block header")?;
                self.group_track = Some(track);
            }
        }
        Ok(())
    }

    fn on_close(&mut self, frame: &Frame<Master>, out: &mut Vec<ScanEvent>) {
        match frame.master {
            Master::TrackEntry => self.end_track_entry(),
            Master::BlockGroup => {
                if let Some(track) = self.group_track {
                    self.on_block(track, !self.group_has_ref, out);
                }
            }
            Master::Cluster => self.cluster = None,
            Master::Segment | Master::Tracks => {}
        }
    }
}
