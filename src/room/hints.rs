//! Tile-sized ingest: what each sender is asked to send.
//!
//! A sender shown in a 320x180 tile gains nothing from sending 1280x720:
//! the server would decode four times the pixels only to throw them away.
//! [`wanted`] works out, from the views and their layouts, the largest box
//! any view shows each sender in, at the highest frame rate of those views,
//! and a bitrate that suits that size. [`Debouncer`] decides when to tell
//! a sender: the first hint at once, a larger one after it has held for a
//! moment (a new speaker gets sharp quickly); a smaller one after the
//! same moment when members or the layout changed (a filling room must
//! not make the server decode full-size streams for long), but only after
//! it has held for longer when it comes from a speaker change (so that
//! does not make senders flap).
//! Pure: time comes in as an argument.

use crate::layout::Layout;
use crate::media::compositor::placements;
use crate::signaling::protocol::SendHint;
use std::collections::BTreeMap;
use std::time::Duration;

/// A larger hint is sent once it has held this long.
pub const GROW_AFTER: Duration = Duration::from_millis(500);
/// A smaller hint caused by a speaker change is sent once it has held this long.
pub const SHRINK_AFTER: Duration = Duration::from_secs(3);
/// The least bitrate asked of a sender.
const MIN_BITRATE: u32 = 80_000;

/// One view as the hints see it: a layout drawn at a size and rate.
pub struct ViewShape<'a> {
    /// The layout.
    pub layout: &'a Layout,
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// The bitrate to ask of a sender sending `width` x `height` at `fps`,
/// given what a 1280x720 30 fps sender is asked (`at_720p30`). Bits per
/// pixel rise as pictures shrink (a quarter of the area needs about a
/// third of the bits), and a lower frame rate needs fewer bits, not
/// proportionally fewer.
pub fn bitrate_for(width: u32, height: u32, fps: u32, at_720p30: u32) -> u32 {
    let area = (width as f64 * height as f64) / (1280.0 * 720.0);
    let rate = (fps.max(1) as f64 / 30.0).min(2.0);
    let bits = at_720p30 as f64 * area.powf(0.75) * rate.sqrt();
    (bits as u32).clamp(MIN_BITRATE, at_720p30.saturating_mul(2).max(MIN_BITRATE))
}

/// What each tile member should send: `tiles` are the media ids in join
/// order, `speaker` the active one; every view is laid out and each
/// member gets the largest box it appears in across views.
pub fn wanted(views: &[ViewShape<'_>], tiles: &[u64], speaker: Option<u64>, at_720p30: u32) -> BTreeMap<u64, SendHint> {
    let mut boxes: BTreeMap<u64, (u32, u32, u32)> = BTreeMap::new();
    for v in views {
        for p in placements(v.layout, tiles, speaker, v.width, v.height) {
            let b = boxes.entry(p.id).or_insert((0, 0, 0));
            *b = (b.0.max(p.inner.w), b.1.max(p.inner.h), b.2.max(v.fps));
        }
    }
    boxes
        .into_iter()
        .filter(|(_, (w, h, _))| *w >= 2 && *h >= 2)
        .map(|(id, (w, h, fps))| {
            let (w, h) = ((w + 1) & !1, (h + 1) & !1);
            (id, SendHint { width: w, height: h, fps, bitrate: bitrate_for(w, h, fps, at_720p30) })
        })
        .collect()
}

/// Per sender: what it was told and what it should be told next.
#[derive(Default)]
struct Track {
    sent: Option<SendHint>,
    /// The hint waiting, since when, and whether it came from a change of
    /// members or layout (it then shrinks as soon as it grows).
    pending: Option<(SendHint, Duration, bool)>,
}

/// Decides when each sender hears of a new hint (see the module doc).
#[derive(Default)]
pub struct Debouncer {
    members: BTreeMap<u64, Track>,
}

impl Debouncer {
    /// A debouncer that has told nobody anything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the hints wanted now (`membership`: because members or the
    /// layout changed, not the speaker); returns those to send now.
    /// Members missing from `wanted` are forgotten.
    pub fn update(
        &mut self,
        now: Duration,
        wanted: &BTreeMap<u64, SendHint>,
        membership: bool,
    ) -> Vec<(u64, SendHint)> {
        self.members.retain(|id, _| wanted.contains_key(id));
        let mut out = Vec::new();
        for (&id, &hint) in wanted {
            let t = self.members.entry(id).or_default();
            let Some(sent) = t.sent else {
                t.sent = Some(hint);
                t.pending = None;
                out.push((id, hint));
                continue;
            };
            if sent == hint {
                t.pending = None;
                continue;
            }
            let (since, quick) = match t.pending {
                Some((p, since, quick)) if p == hint => (since, quick || membership),
                _ => (now, membership),
            };
            t.pending = Some((hint, since, quick));
            let grows = hint.width * hint.height > sent.width * sent.height || hint.fps > sent.fps;
            let hold = if grows || quick { GROW_AFTER } else { SHRINK_AFTER };
            if now.saturating_sub(since) >= hold {
                t.sent = Some(hint);
                t.pending = None;
                out.push((id, hint));
            }
        }
        out
    }

    /// Whether some hint waits for its time.
    pub fn pending(&self) -> bool {
        self.members.values().any(|t| t.pending.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::Arc;

    fn layout(name: &str) -> Arc<Layout> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layouts");
        Arc::new(Layout::load(dir.join(format!("{name}.toml"))).unwrap())
    }

    #[test]
    fn senders_are_asked_for_their_largest_tile() {
        let grid = layout("grid");
        let view = ViewShape { layout: &grid, width: 1280, height: 720, fps: 30 };
        let ids: Vec<u64> = (1..=16).collect();
        let hints = wanted(&[view], &ids, None, 1_500_000);
        assert_eq!(hints.len(), 16);
        for h in hints.values() {
            // A 4x4 grid of a 720p canvas: tiles about 320x180 (borders take a little).
            assert!(h.width <= 320 && h.width >= 300 && h.height <= 180 && h.height >= 160, "{h:?}");
            assert_eq!(h.fps, 30);
            assert!(h.bitrate < 250_000 && h.bitrate >= 150_000, "{h:?}");
        }
        // The speaker layout gives the speaker the big tile; a second,
        // smaller view changes nothing for it.
        let speaker = layout("speaker");
        let views = [
            ViewShape { layout: &speaker, width: 1280, height: 720, fps: 30 },
            ViewShape { layout: &speaker, width: 640, height: 360, fps: 15 },
        ];
        let hints = wanted(&views, &[1, 2, 3, 4], Some(3), 1_500_000);
        let big = hints[&3];
        assert!(big.width > 640, "{big:?}");
        assert!(hints[&1].width * hints[&1].height < big.width * big.height / 4);
    }

    #[test]
    fn larger_hints_come_soon_smaller_ones_late_and_flaps_never() {
        let hint = |w: u32| SendHint { width: w, height: w * 9 / 16, fps: 30, bitrate: 100_000 };
        let mut d = Debouncer::new();
        let at = Duration::from_millis;
        let want = |w: u32| BTreeMap::from([(7u64, hint(w))]);
        let speaker = false;
        // The first is sent at once.
        assert_eq!(d.update(at(0), &want(320), speaker), vec![(7, hint(320))]);
        assert!(d.update(at(100), &want(320), speaker).is_empty());
        // Larger: after GROW_AFTER.
        assert!(d.update(at(1000), &want(960), speaker).is_empty());
        assert!(d.pending());
        assert!(d.update(at(1400), &want(960), speaker).is_empty());
        assert_eq!(d.update(at(1500), &want(960), speaker), vec![(7, hint(960))]);
        // Smaller (the speaker changed), then larger again within
        // SHRINK_AFTER: nothing is sent.
        assert!(d.update(at(2000), &want(320), speaker).is_empty());
        assert!(d.update(at(4000), &want(320), speaker).is_empty());
        assert!(d.update(at(4500), &want(960), speaker).is_empty());
        assert!(!d.pending());
        // A smaller one that holds is sent after SHRINK_AFTER.
        assert!(d.update(at(5000), &want(320), speaker).is_empty());
        assert!(d.update(at(7900), &want(320), speaker).is_empty());
        assert_eq!(d.update(at(8000), &want(320), speaker), vec![(7, hint(320))]);
        // Smaller because the room filled up: after GROW_AFTER only.
        assert!(d.update(at(8100), &want(960), speaker).is_empty());
        assert_eq!(d.update(at(8600), &want(960), speaker), vec![(7, hint(960))]);
        assert!(d.update(at(9000), &want(320), true).is_empty());
        assert!(d.update(at(9200), &want(320), speaker).is_empty());
        assert_eq!(d.update(at(9500), &want(320), speaker), vec![(7, hint(320))]);
        // Someone gone is forgotten: back later, told at once.
        assert!(d.update(at(10_000), &BTreeMap::new(), true).is_empty());
        assert_eq!(d.update(at(10_100), &want(640), true), vec![(7, hint(640))]);
    }
}
