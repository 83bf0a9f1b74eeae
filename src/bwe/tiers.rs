//! A view's quality tiers: which shared encoders it runs and who watches
//! which.
//!
//! Every member of a view gets the same composite, but not every link
//! carries the view's full bitrate. Rates come from a ladder of levels a
//! quarter-octave apart (level 0 is the view's bitrate, each next one
//! ×0.84). A member's level is the best one its estimate affords after
//! audio and a margin ([`affordable`]); it drops at once when the estimate
//! falls (a congested link must be relieved now) and climbs, at most
//! [`MAX_CLIMB`] levels at a time, only after the better level has held
//! for [`UP_HOLD`] and a back-off since its last drop has passed
//! (doubling each time a climb is followed by a drop within
//! [`FAILED_CLIMB`], so a link that sits between two levels does not
//! flap). After a drop, climbs that reach the level it had to leave go
//! one level at a time ([`TOO_HIGH_MEMORY`]): a probe of the link costs a
//! step's worth of overload, not four. The view runs at most [`MAX_TIERS`] encoders: the best
//! level anyone affords, the worst anyone needs, and the level between
//! that gives the members the most bitrate; each member watches the best
//! tier at or under its level. One bad link never drags the others down.
//! A tier far below the view's rate also drops frame rate, then size
//! ([`Shape::for_level`]): 720p at 150 kbps looks worse than 360p.
//!
//! Pure: time comes in as an argument.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Most encoders per view.
pub const MAX_TIERS: usize = 3;
/// Levels on the ladder (the last is the view's rate x 0.84^20 = x0.03).
pub const LEVELS: u8 = 21;
/// Rate ratio between neighbouring levels (a quarter octave).
const STEP: f64 = 0.840_896;
/// A better level must hold this long before a member climbs to it.
pub const UP_HOLD: Duration = Duration::from_secs(2);
/// Most levels climbed at once (x2 in bitrate): a link is probed a step
/// at a time, not at the full rate straight away.
pub const MAX_CLIMB: u8 = 4;
/// A drop this soon after a climb means the climb failed.
pub const FAILED_CLIMB: Duration = Duration::from_secs(6);
/// How long the level a member had to leave is remembered.
pub const TOO_HIGH_MEMORY: Duration = Duration::from_secs(30);
/// The first wait after a drop before climbing again; doubles per failed climb.
const BACKOFF_MIN: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(6);
/// Share of the estimate video may take (the rest: packet headers, RTCP,
/// retransmissions, and room for the estimate to be wrong).
const VIDEO_SHARE: f64 = 0.85;
/// What audio costs on the wire beyond its bitrate: IP, UDP and RTP
/// headers on 50 packets a second.
const AUDIO_OVERHEAD: u32 = 24_000;
/// The least video bitrate a tier is given.
const MIN_RATE: u32 = 40_000;

/// What one tier's encoder makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    /// Ladder level (0: the view's own rate).
    pub level: u8,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate.
    pub bitrate: u32,
}

/// A view as the tiers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewRate {
    /// Canvas width.
    pub width: u32,
    /// Canvas height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate at full quality.
    pub bitrate: u32,
    /// Audio bitrate each member also receives.
    pub audio: u32,
}

impl Shape {
    /// The tier at `level` of `view`: full size and rate down to half the
    /// view's bitrate, then half the frame rate, and below a quarter of
    /// the bitrate half the size too.
    pub fn for_level(view: &ViewRate, level: u8) -> Shape {
        let ratio = STEP.powi(level as i32);
        let bitrate = ((view.bitrate as f64 * ratio) as u32).max(MIN_RATE);
        let (mut width, mut height, mut fps) = (view.width, view.height, view.fps);
        if ratio < 0.5 - 1e-9 {
            fps = (fps / 2).max(1);
        }
        if ratio < 0.25 - 1e-9 && width >= 64 && height >= 64 {
            width = (width / 2) & !1;
            height = (height / 2) & !1;
        }
        Shape { level, width, height, fps, bitrate }
    }
}

/// The video bitrate an estimate affords, beside audio at `audio` bits/s.
pub fn affordable(estimate: u32, audio: u32) -> u32 {
    ((estimate as f64 - (audio + AUDIO_OVERHEAD) as f64) * VIDEO_SHARE).max(0.0) as u32
}

/// What audio at `audio` bits/s costs on the wire.
pub fn audio_wire(audio: u32) -> u32 {
    audio + AUDIO_OVERHEAD
}

/// The least estimate that affords `video` bits/s beside `audio`.
pub fn estimate_for(video: u32, audio: u32) -> u32 {
    (video as f64 / VIDEO_SHARE + (audio + AUDIO_OVERHEAD) as f64).ceil() as u32
}

/// The best level `estimate` affords on `view`.
pub fn level_for(view: &ViewRate, estimate: u32) -> u8 {
    let budget = affordable(estimate, view.audio);
    (0..LEVELS).find(|&k| Shape::for_level(view, k).bitrate <= budget).unwrap_or(LEVELS - 1)
}

#[derive(Clone, Debug)]
struct Member {
    level: u8,
    better_since: Option<Duration>,
    climb_after: Duration,
    backoff: Duration,
    last_climb: Option<Duration>,
    /// The level it last had to leave (its link could not carry it), and
    /// when: climbs that reach it go a level at a time.
    too_high: Option<(u8, Duration)>,
}

/// The tiers of one view (see the module doc).
#[derive(Clone, Debug)]
pub struct TierPlan {
    view: ViewRate,
    members: BTreeMap<String, Member>,
}

/// The plan now: tiers (best first) and each member's tier level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The tiers, best first.
    pub tiers: Vec<Shape>,
    /// Each member's tier (its level).
    pub members: BTreeMap<String, u8>,
}

impl TierPlan {
    /// A plan for `view` with nobody in it.
    pub fn new(view: ViewRate) -> Self {
        Self { view, members: BTreeMap::new() }
    }

    /// The view.
    pub fn view(&self) -> &ViewRate {
        &self.view
    }

    /// Feeds every member's estimate (members missing are forgotten, new
    /// ones start at the level their estimate affords); returns the plan.
    pub fn update(&mut self, now: Duration, estimates: &BTreeMap<String, u32>) -> Plan {
        self.members.retain(|peer, _| estimates.contains_key(peer));
        for (peer, &estimate) in estimates {
            let wanted = level_for(&self.view, estimate);
            let m = self.members.entry(peer.clone()).or_insert(Member {
                level: wanted,
                better_since: None,
                climb_after: now,
                backoff: BACKOFF_MIN,
                last_climb: None,
                too_high: None,
            });
            if wanted > m.level {
                // Worse: at once. A climb that ends like this was too early.
                let failed = m.last_climb.is_some_and(|t| now.saturating_sub(t) < FAILED_CLIMB);
                m.backoff = if failed { (m.backoff * 2).min(BACKOFF_MAX) } else { BACKOFF_MIN };
                m.too_high = Some((m.level, now));
                m.level = wanted;
                m.better_since = None;
                m.climb_after = now + m.backoff;
            } else if wanted < m.level {
                let since = *m.better_since.get_or_insert(now);
                if now.saturating_sub(since) >= UP_HOLD && now >= m.climb_after {
                    // At or past the level that failed and held there:
                    // the link has changed, forget it.
                    m.too_high =
                        m.too_high.filter(|&(level, at)| now.saturating_sub(at) < TOO_HIGH_MEMORY && m.level > level);
                    let mut level = wanted.max(m.level.saturating_sub(MAX_CLIMB));
                    if let Some((high, _)) = m.too_high {
                        // Up to just under it at once, then one level.
                        level = level.max(if m.level > high + 1 { high + 1 } else { m.level - 1 });
                    }
                    m.level = level;
                    m.better_since = None;
                    m.last_climb = Some(now);
                }
            } else {
                m.better_since = None;
            }
        }
        self.plan()
    }

    fn plan(&self) -> Plan {
        let levels: BTreeSet<u8> = self.members.values().map(|m| m.level).collect();
        let chosen: Vec<u8> = if levels.len() <= MAX_TIERS {
            levels.into_iter().collect()
        } else {
            let all: Vec<u8> = levels.into_iter().collect();
            let (best, worst) = (all[0], all[all.len() - 1]);
            let middle = all[1..all.len() - 1]
                .iter()
                .copied()
                .max_by_key(|&mid| self.delivered(&[best, mid, worst]))
                .unwrap_or(worst);
            vec![best, middle, worst]
        };
        let tiers: Vec<Shape> = chosen.iter().map(|&k| Shape::for_level(&self.view, k)).collect();
        let members = self
            .members
            .iter()
            .map(|(peer, m)| (peer.clone(), chosen.iter().copied().find(|&k| k >= m.level).unwrap_or(m.level)))
            .collect();
        Plan { tiers, members }
    }

    /// Total bitrate the members get with these tier levels (best first):
    /// each the best tier at or under its level.
    fn delivered(&self, tiers: &[u8]) -> u64 {
        self.members
            .values()
            .filter_map(|m| tiers.iter().find(|&&k| k >= m.level))
            .map(|&k| Shape::for_level(&self.view, k).bitrate as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEW: ViewRate = ViewRate { width: 1280, height: 720, fps: 30, bitrate: 1_500_000, audio: 32_000 };

    fn at(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn estimates(list: &[(&str, u32)]) -> BTreeMap<String, u32> {
        list.iter().map(|(p, e)| (p.to_string(), *e)).collect()
    }

    #[test]
    fn the_ladder_lowers_rate_then_frame_rate_then_size() {
        let full = Shape::for_level(&VIEW, 0);
        assert_eq!((full.width, full.height, full.fps, full.bitrate), (1280, 720, 30, 1_500_000));
        // 400 kbps link: about 330 kbps of video, a quarter of the rate.
        let capped = Shape::for_level(&VIEW, level_for(&VIEW, 400_000));
        assert!(capped.bitrate <= 330_000 && capped.bitrate > 250_000, "{capped:?}");
        assert_eq!(capped.fps, 15);
        // 150 kbps: half the size as well.
        let thin = Shape::for_level(&VIEW, level_for(&VIEW, 150_000));
        assert_eq!((thin.width, thin.height, thin.fps), (640, 360, 15), "{thin:?}");
        // A link that affords the full rate gets level 0, and just so.
        let full = estimate_for(VIEW.bitrate, VIEW.audio);
        assert_eq!(level_for(&VIEW, full), 0);
        assert_eq!(level_for(&VIEW, full - 20_000), 1);
    }

    #[test]
    fn a_bad_link_drags_nobody_down_and_tiers_stay_three() {
        let mut plan = TierPlan::new(VIEW);
        let p = plan.update(at(0.0), &estimates(&[("a", 5_000_000), ("b", 5_000_000), ("slow", 400_000)]));
        assert_eq!(p.tiers.len(), 2);
        assert_eq!(p.members["a"], 0);
        assert_eq!(p.members["b"], 0);
        assert!(p.members["slow"] > 0);
        // Seven members on seven different links: three encoders, and
        // every member at or under what it affords.
        let links = [5_000_000, 1_500_000, 1_100_000, 800_000, 600_000, 300_000, 150_000];
        let list: Vec<(String, u32)> = links.iter().enumerate().map(|(i, &e)| (format!("m{i}"), e)).collect();
        let mut plan = TierPlan::new(VIEW);
        let map: BTreeMap<String, u32> = list.iter().cloned().collect();
        let p = plan.update(at(0.0), &map);
        assert_eq!(p.tiers.len(), MAX_TIERS);
        for (peer, estimate) in &list {
            let tier = p.tiers.iter().find(|t| t.level == p.members[peer]).unwrap();
            assert!(tier.bitrate <= affordable(*estimate, VIEW.audio), "{peer} at {tier:?} over {estimate}");
        }
        assert_eq!(p.members["m0"], 0);
    }

    #[test]
    fn drops_at_once_climbs_after_holding_and_backs_off_after_a_failed_climb() {
        let mut plan = TierPlan::new(VIEW);
        let run = |plan: &mut TierPlan, t: f64, e: u32| plan.update(at(t), &estimates(&[("m", e)])).members["m"];
        assert_eq!(run(&mut plan, 0.0, 2_000_000), 0);
        // The link drops to 400 kbps: down at once.
        let low = run(&mut plan, 1.0, 400_000);
        assert!(low > 0);
        // It recovers: not before UP_HOLD (and the first back-off), then
        // MAX_CLIMB levels at a time, each held UP_HOLD.
        assert_eq!(run(&mut plan, 1.5, 2_000_000), low);
        assert_eq!(run(&mut plan, 3.4, 2_000_000), low);
        assert_eq!(run(&mut plan, 3.6, 2_000_000), low - MAX_CLIMB);
        // The climb fails at once: down again, and the next climb waits
        // twice as long and stops just under the level that failed...
        let failed = low - MAX_CLIMB;
        assert_eq!(run(&mut plan, 4.0, 400_000), low);
        assert_eq!(run(&mut plan, 4.1, 2_000_000), low);
        assert_eq!(run(&mut plan, 7.0, 2_000_000), low);
        assert_eq!(run(&mut plan, 8.1, 2_000_000), failed + 1);
        // ...then tries it alone, and once it held there, climbs freely.
        assert_eq!(run(&mut plan, 8.5, 2_000_000), failed + 1);
        assert_eq!(run(&mut plan, 10.4, 2_000_000), failed + 1);
        assert_eq!(run(&mut plan, 10.6, 2_000_000), failed);
        let mut level = failed;
        let mut t = 10.6;
        // Updated every 250 ms, as the room task does.
        while level > 0 && t < 30.0 {
            t += 0.25;
            level = run(&mut plan, t, 2_000_000);
            assert!(level >= failed.saturating_sub(MAX_CLIMB) || t > 14.0, "{level} at {t}");
        }
        assert!(t < 16.0, "full rate only at {t} s");
        // Members who leave are forgotten.
        let p = plan.update(at(9.0), &BTreeMap::new());
        assert!(p.members.is_empty() && p.tiers.is_empty());
    }
}
