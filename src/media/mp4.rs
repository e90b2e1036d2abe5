//! Fragmented-MP4 (ISO-BMFF) grammar for the [`Walker`](super::walker::Walker).
//!
//! Rules: the init segment ends where the first `moof` starts. Track kinds
//! come from `moov/trak` (`tkhd` track_ID + `mdia/hdlr` handler `vide`).
//! With no video track known, every `moof` is a join point. Otherwise a
//! `moof` is a join point when the first sample of the first video `trun`
//! (with samples) is a sync sample, its flags taken from, in order:
//! trun first_sample_flags, trun per-sample flags, tfhd default_sample_flags,
//! `trex` default_sample_flags; with no flags at all it counts as sync.
//! Non-join `moof`s are not reported. A box of size 0 ("to end of stream") is
//! only accepted at top level and ends scanning (no further events).

use super::walker::{Action, Frame, Grammar, Header, Reason};
use super::ScanEvent;

const fn fourcc(s: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*s)
}

const MOOV: u32 = fourcc(b"moov");
const TRAK: u32 = fourcc(b"trak");
const TKHD: u32 = fourcc(b"tkhd");
const MDIA: u32 = fourcc(b"mdia");
const HDLR: u32 = fourcc(b"hdlr");
const MVEX: u32 = fourcc(b"mvex");
const TREX: u32 = fourcc(b"trex");
const MOOF: u32 = fourcc(b"moof");
const TRAF: u32 = fourcc(b"traf");
const TFHD: u32 = fourcc(b"tfhd");
const TRUN: u32 = fourcc(b"trun");

/// `sample_is_non_sync_sample` bit of ISO-BMFF sample flags.
const NON_SYNC: u32 = 0x0001_0000;
/// Maximum number of tracks remembered from `moov`.
const MAX_TRACKS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Master {
    Moov,
    Trak,
    Mdia,
    Mvex,
    Moof,
    Traf,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Leaf {
    Tkhd,
    Hdlr,
    Trex,
    Tfhd,
    Trun,
}

#[derive(Debug, Clone, Copy, Default)]
struct Track {
    id: u32,
    video: bool,
    trex_flags: Option<u32>,
}

/// fMP4-specific scanning state (all fixed-size).
#[derive(Debug, Default)]
pub(super) struct Mp4 {
    init_done: bool,
    tracks: [Track; MAX_TRACKS],
    track_count: usize,
    trak_id: Option<u32>,
    trak_video: bool,
    /// Offset of the current `moof` while its join status is undecided.
    pending_moof: Option<u64>,
    traf_track: Option<u32>,
    traf_flags: Option<u32>,
}

fn be32(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Box flags (24 bits after the version byte).
fn box_flags(data: &[u8]) -> Option<u32> {
    be32(data, 0).map(|v| v & 0x00FF_FFFF)
}

/// Default sample flags from a `tfhd` payload, if present.
fn tfhd_default_flags(data: &[u8], flags: u32) -> Option<u32> {
    let skips = [(0x01, 8), (0x02, 4), (0x08, 4), (0x10, 4)];
    let off = skips
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| n)
        .sum::<usize>()
        + 8;
    (flags & 0x20 != 0).then(|| be32(data, off)).flatten()
}

/// First-sample flags from a `trun` payload (`Ok(None)` if not present).
fn trun_first_flags(data: &[u8], flags: u32) -> Result<Option<u32>, Reason> {
    let mut off = 8 + if flags & 0x01 != 0 { 4 } else { 0 };
    let field = if flags & 0x04 != 0 {
        Some(off)
    } else {
        off += [0x100, 0x200].iter().filter(|&&b| flags & b != 0).count() * 4;
        (flags & 0x400 != 0).then_some(off)
    };
    match field {
        Some(off) => be32(data, off).map(Some).ok_or("truncated trun"),
        None => Ok(None),
    }
}

impl Mp4 {
    fn track(&self, id: u32) -> Option<&Track> {
        self.tracks[..self.track_count].iter().find(|t| t.id == id)
    }

    /// Finds or adds the entry for `id` (`None` if the table is full).
    fn track_mut(&mut self, id: u32) -> Option<&mut Track> {
        let n = self.track_count;
        if let Some(i) = self.tracks[..n].iter().position(|t| t.id == id) {
            return self.tracks.get_mut(i);
        }
        let slot = self.tracks.get_mut(n)?;
        *slot = Track {
            id,
            ..Track::default()
        };
        self.track_count += 1;
        Some(slot)
    }

    fn has_video(&self) -> bool {
        self.tracks[..self.track_count].iter().any(|t| t.video)
    }

    fn start_moof(&mut self, h: &Header, out: &mut Vec<ScanEvent>) {
        if !self.init_done {
            self.init_done = true;
            out.push(ScanEvent::InitComplete {
                len: h.start,
                segment_size: None,
            });
        }
        if self.has_video() {
            self.pending_moof = Some(h.start);
        } else {
            self.pending_moof = None;
            out.push(ScanEvent::JoinPoint { offset: h.start });
        }
    }

    fn on_trun(&mut self, data: &[u8], out: &mut Vec<ScanEvent>) -> Result<(), Reason> {
        let flags = box_flags(data).ok_or("truncated trun")?;
        let samples = be32(data, 4).ok_or("truncated trun")?;
        let Some(track) = self.traf_track.and_then(|id| self.track(id)).copied() else {
            return Ok(());
        };
        if samples == 0 || !track.video {
            return Ok(());
        }
        let first = trun_first_flags(data, flags)?;
        let sample_flags = first.or(self.traf_flags).or(track.trex_flags);
        if let Some(offset) = self.pending_moof.take() {
            if sample_flags.is_none_or(|f| f & NON_SYNC == 0) {
                out.push(ScanEvent::JoinPoint { offset });
            }
        }
        Ok(())
    }

    fn on_tfhd(&mut self, data: &[u8]) -> Result<(), Reason> {
        let flags = box_flags(data).ok_or("truncated tfhd")?;
        self.traf_track = Some(be32(data, 4).ok_or("truncated tfhd")?);
        self.traf_flags = tfhd_default_flags(data, flags);
        Ok(())
    }

    fn on_tkhd(&mut self, data: &[u8]) -> Result<(), Reason> {
        let off = if data.first() == Some(&1) { 20 } else { 12 };
        self.trak_id = Some(be32(data, off).ok_or("truncated tkhd")?);
        Ok(())
    }

    fn on_trex(&mut self, data: &[u8]) -> Result<(), Reason> {
        let id = be32(data, 4).ok_or("truncated trex")?;
        let flags = be32(data, 20).ok_or("truncated trex")?;
        if let Some(t) = self.track_mut(id) {
            t.trex_flags = Some(flags);
        }
        Ok(())
    }

    fn child_action(&mut self, parent: Master, id: u32) -> Action<Master, Leaf> {
        match (parent, id) {
            (Master::Moov, TRAK) => {
                (self.trak_id, self.trak_video) = (None, false);
                Action::Enter(Master::Trak)
            }
            (Master::Moov, MVEX) => Action::Enter(Master::Mvex),
            (Master::Trak, TKHD) => Action::Read(Leaf::Tkhd, 24),
            (Master::Trak, MDIA) => Action::Enter(Master::Mdia),
            (Master::Mdia, HDLR) => Action::Read(Leaf::Hdlr, 12),
            (Master::Mvex, TREX) => Action::Read(Leaf::Trex, 24),
            (Master::Moof, TRAF) => {
                (self.traf_track, self.traf_flags) = (None, None);
                Action::Enter(Master::Traf)
            }
            (Master::Traf, TFHD) => Action::Read(Leaf::Tfhd, 32),
            (Master::Traf, TRUN) => Action::Read(Leaf::Trun, 28),
            _ => Action::Skip,
        }
    }
}

impl Grammar for Mp4 {
    type Master = Master;
    type Leaf = Leaf;

    fn header_need(buf: &[u8]) -> Result<usize, Reason> {
        Ok(if be32(buf, 0) == Some(1) { 16 } else { 8 })
    }

    fn parse_header(buf: &[u8]) -> Result<(u32, Option<u64>, u8), Reason> {
        let size32 = be32(buf, 0).ok_or("short box header")?;
        let typ = be32(buf, 4).ok_or("short box header")?;
        let (size, len, width) = match size32 {
            0 => return Ok((typ, None, 4)),
            1 => {
                let hi = be32(buf, 8).ok_or("short box header")?;
                let lo = be32(buf, 12).ok_or("short box header")?;
                ((u64::from(hi) << 32) | u64::from(lo), 16, 8)
            }
            n => (u64::from(n), 8, 4),
        };
        let payload = size
            .checked_sub(len)
            .ok_or("box size smaller than its header")?;
        Ok((typ, Some(payload), width))
    }

    fn ends_unknown(&self, _master: Master, _id: u32) -> bool {
        false
    }

    fn on_header(
        &mut self,
        parent: Option<Master>,
        h: &Header,
        out: &mut Vec<ScanEvent>,
    ) -> Result<Action<Master, Leaf>, Reason> {
        if h.size.is_none() {
            return match parent {
                None => Ok(Action::Skip),
                Some(_) => Err("box of size 0 (to end of stream) inside another box"),
            };
        }
        Ok(match (parent, h.id) {
            (None, MOOV) => Action::Enter(Master::Moov),
            (None, MOOF) => {
                self.start_moof(h, out);
                Action::Enter(Master::Moof)
            }
            (None, _) => Action::Skip,
            (Some(p), id) => self.child_action(p, id),
        })
    }

    fn on_value(
        &mut self,
        leaf: Leaf,
        data: &[u8],
        out: &mut Vec<ScanEvent>,
    ) -> Result<(), Reason> {
        match leaf {
            Leaf::Tkhd => self.on_tkhd(data),
            Leaf::Hdlr => {
                self.trak_video = data.get(8..12) == Some(b"vide".as_slice());
                Ok(())
            }
            Leaf::Trex => self.on_trex(data),
            Leaf::Tfhd => self.on_tfhd(data),
            Leaf::Trun => self.on_trun(data, out),
        }
    }

    fn on_close(&mut self, frame: &Frame<Master>, _out: &mut Vec<ScanEvent>) {
        match frame.master {
            Master::Trak => {
                let video = self.trak_video;
                if let Some(t) = self.trak_id.and_then(|id| self.track_mut(id)) {
                    t.video = video;
                }
            }
            Master::Moof => self.pending_moof = None,
            _ => {}
        }
    }
}
