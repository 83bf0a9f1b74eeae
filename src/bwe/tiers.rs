//! A view's quality tiers: which shared encoders it runs and who watches
//! which.
//!
//! Every member of a view gets the same composite, but not every link
//! carries the view's full bitrate. A view runs at most [`MAX_TIERS`]
//! encoders; each member watches one of them (its tier), and a tier sends
//! at the least rate its members' links afford ([`affordable`]: the
//! estimate less audio and a margin), capped at the view's bitrate. So a
//! tier's rate follows its members' estimates *continuously*: the encoder
//! is told a new bitrate (no keyframe, no new encoder), and a member alone
//! on a tier gets what its link carries, moment by moment, as if it had an
//! encoder of its own. Members move between tiers only when their links
//! part ways or come together:
//!
//! - the plan is a partition of the members, sorted by what they afford,
//!   into at most three runs; a run's rate is what its last member
//!   affords. The target is the partition with the fewest tiers in which
//!   every member gets at least [`SHARE`] of what it affords (the most
//!   bitrate in all, among those), or else the one that delivers the most;
//! - a member getting less than [`DRAG`] of what it affords (another
//!   member's link drags its tier down), or a new member, makes the view
//!   take the target at once, if it is better: one bad link never drags
//!   the others down for long;
//! - a target with fewer tiers (links that came together: a member alone
//!   on its tier that now affords a better tier's rate) is taken once it
//!   has held for [`UP_HOLD`], and the encoder left empty stops.
//!
//! Moving costs the member one keyframe of its new tier; changing rate
//! within a tier costs nothing. A tier far below the view's rate also
//! halves its frame rate, then its size ([`Shape::for_rate`], with
//! hysteresis so a rate near a threshold does not restart the encoder
//! again and again): 720p at 150 kbps looks worse than 360p.
//!
//! Pure: time comes in as an argument.

use std::collections::BTreeMap;
use std::time::Duration;

/// Most encoders per view.
pub const MAX_TIERS: usize = 3;
/// A better tier must be affordable this long before a member climbs to it.
pub const UP_HOLD: Duration = Duration::from_secs(2);
/// A member getting less than this share of what its link affords makes
/// the view re-plan its tiers at once.
pub const DRAG: f64 = 0.85;
/// Members share a tier when each gets at least this share of what its
/// link affords (above [`DRAG`], so a fresh plan does not break again at
/// the next wobble of an estimate).
pub const SHARE: f64 = 0.93;
/// Under this share of the view's rate a tier halves its frame rate...
const HALF_FPS_AT: f64 = 0.5;
/// ...and goes back to the full rate above this one.
const FULL_FPS_AT: f64 = 0.6;
/// Under this share a tier halves its size, and goes back above the next.
const HALF_SIZE_AT: f64 = 0.25;
const FULL_SIZE_AT: f64 = 0.3;
/// Rate rises smaller than this share are not passed to the encoder
/// (falls always are).
const RATE_STEP: f64 = 0.03;
/// Share of the estimate video may take (the rest: packet headers, RTCP,
/// retransmissions, and room for the estimate to be wrong).
const VIDEO_SHARE: f64 = 0.92;
/// What audio costs on the wire beyond its bitrate: IP, UDP and RTP
/// headers on 50 packets a second.
const AUDIO_OVERHEAD: u32 = 24_000;
/// The least video bitrate a tier is given.
pub const MIN_RATE: u32 = 40_000;

/// A tier's identity while it lives (an encoder of the view).
pub type TierId = u32;

/// What one tier's encoder makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
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
    /// The view at its full size, rate and bitrate.
    pub fn full(view: &ViewRate) -> Shape {
        Shape { width: view.width, height: view.height, fps: view.fps, bitrate: view.bitrate }
    }

    /// The tier of `view` sending `bitrate`: full size and frame rate down
    /// to half the view's bitrate, then half the frame rate, and below a
    /// quarter half the size too. A tier that was already smaller or
    /// slower (`was`) keeps that until the rate is a little above the
    /// threshold.
    pub fn for_rate(view: &ViewRate, bitrate: u32, was: Option<&Shape>) -> Shape {
        let bitrate = bitrate.clamp(MIN_RATE.min(view.bitrate), view.bitrate.max(MIN_RATE));
        let ratio = bitrate as f64 / view.bitrate.max(1) as f64;
        let slow = was.is_some_and(|s| s.fps < view.fps);
        let small = was.is_some_and(|s| s.width < view.width);
        let half_fps = ratio < if slow { FULL_FPS_AT } else { HALF_FPS_AT };
        let half_size = ratio < if small { FULL_SIZE_AT } else { HALF_SIZE_AT };
        let (mut width, mut height, mut fps) = (view.width, view.height, view.fps);
        if half_fps || half_size {
            fps = (fps / 2).max(1);
        }
        if half_size && width >= 64 && height >= 64 {
            width = (width / 2) & !1;
            height = (height / 2) & !1;
        }
        Shape { width, height, fps, bitrate }
    }

    /// Whether an encoder making `self` can make `other` by changing its
    /// bitrate and frame rate (same picture size).
    pub fn same_size(&self, other: &Shape) -> bool {
        (self.width, self.height) == (other.width, other.height)
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

/// One tier of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    /// Its identity (one encoder).
    pub id: TierId,
    /// What it makes.
    pub shape: Shape,
}

/// The plan now: tiers (best first) and each member's tier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The tiers, best first.
    pub tiers: Vec<Tier>,
    /// Each member's tier.
    pub members: BTreeMap<String, TierId>,
}

impl Plan {
    /// The tier `peer` watches, and its rank (0: the best).
    pub fn tier_of(&self, peer: &str) -> Option<(usize, &Tier)> {
        let id = self.members.get(peer)?;
        self.tiers.iter().enumerate().find(|(_, t)| t.id == *id)
    }
}

#[derive(Clone, Debug)]
struct Member {
    tier: TierId,
    /// What its link affords now (video, bits/s).
    affords: u32,
}

/// A partition of the members (sorted by what they afford, best first)
/// into runs: where each run ends.
#[derive(Clone, Debug, PartialEq)]
struct Partition {
    ends: Vec<usize>,
    /// Bitrate delivered to all members.
    delivered: u64,
    /// The least share of what a member affords that it gets.
    worst: f64,
}

impl Partition {
    fn of(sorted: &[u32], ends: Vec<usize>) -> Self {
        let (mut delivered, mut worst, mut start) = (0u64, 1.0f64, 0usize);
        for &end in &ends {
            let (best, rate) = (sorted[start], sorted[end - 1]);
            delivered += rate as u64 * (end - start) as u64;
            if best > 0 {
                worst = worst.min(rate as f64 / best as f64);
            }
            start = end;
        }
        Self { ends, delivered, worst }
    }

    /// The fewest runs in which everyone gets `share` of what it affords
    /// (the most delivered among those), else the most delivered.
    fn target(sorted: &[u32], share: f64) -> Self {
        let n = sorted.len();
        let mut all = vec![Self::of(sorted, vec![n])];
        for a in 1..n {
            all.push(Self::of(sorted, vec![a, n]));
            if MAX_TIERS >= 3 {
                for b in a + 1..n {
                    all.push(Self::of(sorted, vec![a, b, n]));
                }
            }
        }
        let fits = all
            .iter()
            .filter(|p| p.worst >= share)
            .min_by(|x, y| x.ends.len().cmp(&y.ends.len()).then(y.delivered.cmp(&x.delivered)));
        match fits {
            Some(p) => p.clone(),
            None => all
                .into_iter()
                .max_by_key(|p| (p.delivered, std::cmp::Reverse(p.ends.len())))
                .unwrap_or_else(|| Self { ends: Vec::new(), delivered: 0, worst: 1.0 }),
        }
    }
}

/// The tiers of one view (see the module doc).
#[derive(Clone, Debug)]
pub struct TierPlan {
    view: ViewRate,
    members: BTreeMap<String, Member>,
    /// Live tiers and what their encoders were last told.
    shapes: BTreeMap<TierId, Shape>,
    next_id: TierId,
    /// Since when a plan with fewer tiers would do.
    fewer_since: Option<Duration>,
    /// Since when each tier's rate has called for a bigger or faster shape.
    grow_since: BTreeMap<TierId, Duration>,
}

impl TierPlan {
    /// A plan for `view` with nobody in it.
    pub fn new(view: ViewRate) -> Self {
        Self {
            view,
            members: BTreeMap::new(),
            shapes: BTreeMap::new(),
            next_id: 0,
            fewer_since: None,
            grow_since: BTreeMap::new(),
        }
    }

    /// The view.
    pub fn view(&self) -> &ViewRate {
        &self.view
    }

    /// Each tier's rate now: what its members afford, at the least.
    fn rates(&self) -> BTreeMap<TierId, u32> {
        let mut rates: BTreeMap<TierId, u32> = BTreeMap::new();
        for m in self.members.values() {
            let r = rates.entry(m.tier).or_insert(u32::MAX);
            *r = (*r).min(m.affords);
        }
        rates
    }

    /// Members best first (ties by name, so plans do not flicker).
    fn sorted(&self) -> Vec<(&String, &Member)> {
        let mut v: Vec<(&String, &Member)> = self.members.iter().collect();
        v.sort_by(|a, b| b.1.affords.cmp(&a.1.affords).then(a.0.cmp(b.0)));
        v
    }

    /// The plan as it stands, measured like a partition.
    fn current(&self) -> (u64, f64, usize) {
        let rates = self.rates();
        let (mut delivered, mut worst) = (0u64, 1.0f64);
        for m in self.members.values() {
            let rate = rates.get(&m.tier).copied().unwrap_or(m.affords);
            delivered += rate as u64;
            if m.affords > 0 {
                worst = worst.min(rate as f64 / m.affords as f64);
            }
        }
        (delivered, worst, rates.len())
    }

    /// Puts the members into the runs of `p`, each run on the live tier
    /// most of its members already watch (so the fewest move).
    fn adopt(&mut self, p: &Partition) {
        let order: Vec<String> = self.sorted().into_iter().map(|(peer, _)| peer.clone()).collect();
        let mut taken: Vec<TierId> = Vec::new();
        let mut start = 0;
        for &end in &p.ends {
            let run = &order[start..end];
            let mut counts: BTreeMap<TierId, usize> = BTreeMap::new();
            for peer in run {
                *counts.entry(self.members[peer].tier).or_default() += 1;
            }
            let reuse = counts
                .iter()
                .filter(|(id, _)| **id != TierId::MAX && !taken.contains(id))
                .max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id)))
                .map(|(id, _)| *id);
            let id = reuse.unwrap_or_else(|| {
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1) % TierId::MAX;
                id
            });
            taken.push(id);
            for peer in run {
                if let Some(m) = self.members.get_mut(peer) {
                    m.tier = id;
                }
            }
            start = end;
        }
    }

    /// Feeds every member's estimate (members missing are forgotten, new
    /// ones are placed at once); returns the plan.
    pub fn update(&mut self, now: Duration, estimates: &BTreeMap<String, u32>) -> Plan {
        self.members.retain(|peer, _| estimates.contains_key(peer));
        let full = self.view.bitrate;
        let mut joined = false;
        for (peer, &estimate) in estimates {
            let affords = affordable(estimate, self.view.audio).min(full);
            match self.members.get_mut(peer) {
                Some(m) => m.affords = affords,
                None => {
                    joined = true;
                    // A tier of its own until the plan below places it.
                    self.members.insert(peer.clone(), Member { tier: TierId::MAX, affords });
                }
            }
        }
        let sorted: Vec<u32> = self.sorted().iter().map(|(_, m)| m.affords).collect();
        if !sorted.is_empty() {
            let target = Partition::target(&sorted, SHARE);
            let (delivered, worst, tiers) = self.current();
            let broken = worst < DRAG || tiers > MAX_TIERS;
            let better = target.worst > worst + 0.01 || target.delivered as f64 > delivered as f64 * 1.05;
            if joined || (broken && better) {
                self.adopt(&target);
                self.fewer_since = None;
            } else if target.ends.len() < tiers && target.worst >= SHARE {
                let since = *self.fewer_since.get_or_insert(now);
                if now.saturating_sub(since) >= UP_HOLD {
                    self.adopt(&target);
                    self.fewer_since = None;
                }
            } else {
                self.fewer_since = None;
            }
        }
        self.reshape(now);
        self.plan()
    }

    /// Each tier's shape from its rate: falls are told at once, rises in
    /// steps of [`RATE_STEP`]; a bigger picture or a faster frame rate
    /// only once the rate has called for it for [`UP_HOLD`] (each costs a
    /// new encoder or a change of pace, and a rate just over a threshold
    /// on a link being probed may fall back at once).
    fn reshape(&mut self, now: Duration) {
        let rates = self.rates();
        self.shapes.retain(|id, _| rates.contains_key(id));
        self.grow_since.retain(|id, _| rates.contains_key(id));
        for (id, rate) in rates {
            let rate = rate / 1000 * 1000;
            let was = self.shapes.get(&id).copied();
            let rate = match was {
                Some(w) if rate > w.bitrate && (rate as f64) < w.bitrate as f64 * (1.0 + RATE_STEP) => w.bitrate,
                _ => rate,
            };
            let mut shape = Shape::for_rate(&self.view, rate, was.as_ref());
            match was {
                Some(w) if shape.width > w.width || shape.fps > w.fps => {
                    let since = *self.grow_since.entry(id).or_insert(now);
                    if now.saturating_sub(since) < UP_HOLD {
                        shape = Shape { width: w.width, height: w.height, fps: w.fps, bitrate: shape.bitrate };
                    } else {
                        self.grow_since.remove(&id);
                    }
                }
                _ => {
                    self.grow_since.remove(&id);
                }
            }
            self.shapes.insert(id, shape);
        }
    }

    fn plan(&self) -> Plan {
        let mut tiers: Vec<Tier> = self.shapes.iter().map(|(&id, &shape)| Tier { id, shape }).collect();
        tiers.sort_by_key(|t| (std::cmp::Reverse(t.shape.bitrate), t.id));
        let members = self.members.iter().map(|(p, m)| (p.clone(), m.tier)).collect();
        Plan { tiers, members }
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

    fn rate_of(p: &Plan, peer: &str) -> u32 {
        p.tier_of(peer).unwrap().1.shape.bitrate
    }

    #[test]
    fn the_shape_lowers_frame_rate_then_size_with_hysteresis() {
        let full = Shape::for_rate(&VIEW, 1_500_000, None);
        assert_eq!((full.width, full.height, full.fps), (1280, 720, 30));
        // 400 kbps link: about 315 kbps of video, under a quarter of the
        // view's rate (375 kbps): half the size and half the frame rate.
        let capped = Shape::for_rate(&VIEW, affordable(400_000, VIEW.audio), None);
        assert!(capped.bitrate > 240_000 && capped.bitrate < 330_000, "{capped:?}");
        assert_eq!((capped.width, capped.fps), (640, 15));
        let half = Shape::for_rate(&VIEW, 600_000, None);
        assert_eq!((half.width, half.fps), (1280, 15));
        // Just above a threshold, a smaller or slower tier stays so.
        let still_small = Shape::for_rate(&VIEW, 400_000, Some(&capped));
        assert_eq!((still_small.width, still_small.fps), (640, 15));
        let grown = Shape::for_rate(&VIEW, 460_000, Some(&capped));
        assert_eq!((grown.width, grown.fps), (1280, 15));
        let still_slow = Shape::for_rate(&VIEW, 800_000, Some(&half));
        assert_eq!(still_slow.fps, 15);
        assert_eq!(Shape::for_rate(&VIEW, 950_000, Some(&half)).fps, 30);
        // A link that affords the full rate gets exactly it.
        assert_eq!(affordable(estimate_for(VIEW.bitrate, VIEW.audio), VIEW.audio), VIEW.bitrate);
    }

    #[test]
    fn a_bad_link_drags_nobody_down_and_tiers_stay_three() {
        let mut plan = TierPlan::new(VIEW);
        let p = plan.update(at(0.0), &estimates(&[("a", 5_000_000), ("b", 5_000_000), ("slow", 400_000)]));
        assert_eq!(p.tiers.len(), 2);
        assert_eq!(rate_of(&p, "a"), VIEW.bitrate);
        assert_eq!(p.members["a"], p.members["b"]);
        assert_eq!(rate_of(&p, "slow"), affordable(400_000, VIEW.audio) / 1000 * 1000);
        // Seven members on seven different links: three encoders, and
        // every member at or under what it affords.
        let links = [5_000_000, 1_500_000, 1_100_000, 800_000, 600_000, 300_000, 150_000];
        let list: Vec<(String, u32)> = links.iter().enumerate().map(|(i, &e)| (format!("m{i}"), e)).collect();
        let mut plan = TierPlan::new(VIEW);
        let map: BTreeMap<String, u32> = list.iter().cloned().collect();
        let p = plan.update(at(0.0), &map);
        assert_eq!(p.tiers.len(), MAX_TIERS);
        for (peer, estimate) in &list {
            assert!(rate_of(&p, peer) <= affordable(*estimate, VIEW.audio), "{peer} over {estimate}: {p:?}");
        }
        // With more links than tiers someone shares with a slower link:
        // the plan delivers the most bitrate in all.
        assert!(rate_of(&p, "m0") >= VIEW.bitrate * 8 / 10, "{p:?}");
        assert!(rate_of(&p, "m2") >= 400_000, "{p:?}");
    }

    #[test]
    fn a_member_alone_on_its_tier_is_followed_without_moving_and_rejoins_once_it_can() {
        let mut plan = TierPlan::new(VIEW);
        let run = |plan: &mut TierPlan, t: f64, e: u32| plan.update(at(t), &estimates(&[("a", 5_000_000), ("m", e)]));
        let p = run(&mut plan, 0.0, 5_000_000);
        assert_eq!(p.tiers.len(), 1);
        // The link falls to 400 kbps: a tier of its own at once.
        let p = run(&mut plan, 1.0, 400_000);
        let tier = p.members["m"];
        assert_ne!(tier, p.members["a"]);
        // The estimate wanders: the tier follows it, and stays the same tier.
        for (i, e) in [420_000, 380_000, 450_000, 500_000, 360_000].into_iter().enumerate() {
            let p = run(&mut plan, 2.0 + i as f64, e);
            assert_eq!(p.members["m"], tier);
            let want = affordable(e, VIEW.audio);
            let got = rate_of(&p, "m");
            assert!(got <= want && got as f64 >= want as f64 * 0.96, "{got} for {want}");
        }
        // The link recovers: the tier follows it up to the full rate at
        // once, its picture grows after a hold; after the hold the member
        // joins the full tier and its own stops.
        let p = run(&mut plan, 10.0, 2_000_000);
        assert_eq!(rate_of(&p, "m"), VIEW.bitrate);
        assert_eq!(p.tier_of("m").unwrap().1.shape.width, 640);
        let p = run(&mut plan, 11.0, 2_000_000);
        assert_eq!(p.tier_of("m").unwrap().1.shape.width, 640);
        let p = run(&mut plan, 11.9, 2_000_000);
        assert_eq!(p.tiers.len(), 2);
        assert_eq!(p.tier_of("m").unwrap().1.shape.width, 640);
        let p = run(&mut plan, 12.1, 2_000_000);
        assert_eq!(p.members["m"], p.members["a"]);
        assert_eq!(p.tiers.len(), 1);
    }

    #[test]
    fn close_links_share_a_tier_and_one_that_pulls_ahead_gets_its_own() {
        let mut plan = TierPlan::new(VIEW);
        let list = [("a", 5_000_000), ("b", 700_000), ("c", 720_000)];
        let p = plan.update(at(0.0), &estimates(&list));
        assert_eq!(p.members["b"], p.members["c"]);
        assert_eq!(p.tiers.len(), 2);
        // A small difference: still shared.
        let list = [("a", 5_000_000), ("b", 700_000), ("c", 750_000)];
        let p = plan.update(at(0.5), &estimates(&list));
        assert_eq!(p.members["b"], p.members["c"]);
        // c's link grows to 1 Mbps: b would hold it at two thirds of what
        // it affords, so c gets a tier of its own at once.
        let list = [("a", 5_000_000), ("b", 700_000), ("c", 1_000_000)];
        let p = plan.update(at(1.0), &estimates(&list));
        assert_ne!(p.members["b"], p.members["c"]);
        assert_eq!(rate_of(&p, "c"), affordable(1_000_000, VIEW.audio) / 1000 * 1000);
        // b falls far: it leaves nobody behind it (alone), its tier follows.
        let list = [("a", 5_000_000), ("b", 300_000), ("c", 1_000_000)];
        let before = p.members["b"];
        let p = plan.update(at(4.0), &estimates(&list));
        assert_eq!(p.members["b"], before);
        // With three tiers taken, a fourth link joins the lowest it fits
        // or the lowest of all.
        let list = [("a", 5_000_000), ("b", 300_000), ("c", 1_000_000), ("d", 150_000)];
        let p = plan.update(at(5.0), &estimates(&list));
        assert_eq!(p.tiers.len(), 3);
        assert_eq!(p.members["d"], p.members["b"]);
        assert!(rate_of(&p, "b") <= affordable(150_000, VIEW.audio));
        // Members who leave are forgotten.
        let p = plan.update(at(9.0), &BTreeMap::new());
        assert!(p.members.is_empty() && p.tiers.is_empty());
    }
}
