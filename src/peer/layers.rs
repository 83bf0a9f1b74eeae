//! Which of a sender's video streams to decode, and which to refuse.
//!
//! A sender may send one stream or, with simulcast, several layers of the
//! same picture at different sizes (Chromium: rids `q`, `h`, `f`). The
//! server needs one picture per sender, at about the size its largest tile
//! shows it: [`LayerChoice`] picks the smallest layer that covers that
//! size (the largest if none does), switches on a keyframe of the new
//! layer (asking for one), and never decodes a layer whose size, read from
//! its sequence parameter set before any decoding, is above the ingest
//! limit. Pure: the reader feeds it what arrives and does what it says.

/// What to do with one access unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the decoder.
    Decode,
    /// Not the layer being decoded: drop it.
    Skip,
    /// Its stream announces a picture above the limit: drop it, and tell
    /// the sender (once per refusal).
    Refuse {
        /// Announced width.
        width: u32,
        /// Announced height.
        height: u32,
    },
}

/// The layer being decoded, as [`LayerChoice::active`] tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Active<'a> {
    /// Its SSRC.
    pub ssrc: u32,
    /// Its rid (simulcast).
    pub rid: Option<&'a str>,
    /// Its picture size, from its SPS.
    pub size: Option<(u32, u32)>,
}

#[derive(Clone, Debug)]
struct Layer {
    ssrc: u32,
    rid: Option<String>,
    /// From the last SPS seen on it.
    size: Option<(u32, u32)>,
    /// Its last SPS was above the limit (or unreadable).
    refused: bool,
}

/// The choice among one sender's layers (see the module doc).
#[derive(Clone, Debug)]
pub struct LayerChoice {
    layers: Vec<Layer>,
    limit: (u32, u32),
    need: Option<(u32, u32)>,
    /// The layer being decoded.
    active: Option<u32>,
    /// The sender was told about the current refusal.
    refusal_told: bool,
}

/// Most layers kept per sender (simulcast has three; more is hostile).
const MAX_LAYERS: usize = 8;

impl LayerChoice {
    /// No layer yet; pictures larger than `limit` (either orientation) are refused.
    pub fn new(limit: (u32, u32)) -> Self {
        Self { layers: Vec::new(), limit, need: None, active: None, refusal_told: false }
    }

    /// A layer announced itself (simulcast: with its rid).
    pub fn layer(&mut self, ssrc: u32, rid: Option<String>) {
        if let Some(l) = self.layers.iter_mut().find(|l| l.ssrc == ssrc) {
            if rid.is_some() {
                l.rid = rid;
            }
        } else if self.layers.len() < MAX_LAYERS {
            self.layers.push(Layer { ssrc, rid, size: None, refused: false });
        }
    }

    /// The size the sender is shown at, at most (`None`: as large as it comes).
    pub fn set_need(&mut self, need: Option<(u32, u32)>) {
        self.need = need;
    }

    /// How many layers the sender sends.
    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    /// The layer being decoded.
    pub fn active(&self) -> Option<Active<'_>> {
        let l = self.layers.iter().find(|l| Some(l.ssrc) == self.active)?;
        Some(Active { ssrc: l.ssrc, rid: l.rid.as_deref(), size: l.size })
    }

    fn within_limit(&self, (w, h): (u32, u32)) -> bool {
        let (lw, lh) = (self.limit.0.max(self.limit.1), self.limit.0.min(self.limit.1));
        w.max(h) <= lw && w.min(h) <= lh
    }

    /// The layer to decode now: the smallest usable one covering the need
    /// (the largest usable one if none does). Layers of unknown size are
    /// used only when nothing else is.
    pub fn target(&self) -> Option<u32> {
        let usable: Vec<&Layer> = self.layers.iter().filter(|l| !l.refused).collect();
        let sized: Vec<(&Layer, (u32, u32))> = usable.iter().filter_map(|l| l.size.map(|s| (*l, s))).collect();
        if sized.is_empty() {
            // Nothing known yet: stay where we are, or take the first.
            return self.active.filter(|a| usable.iter().any(|l| l.ssrc == *a)).or(usable.first().map(|l| l.ssrc));
        }
        let area = |(w, h): (u32, u32)| w as u64 * h as u64;
        let covers = |(w, h): (u32, u32)| match self.need {
            // Within a tenth: simulcast layers are exact fractions, tiles are not.
            Some((nw, nh)) => w as u64 * 10 >= nw as u64 * 9 && h as u64 * 10 >= nh as u64 * 9,
            None => false,
        };
        let best = match sized.iter().filter(|(_, s)| covers(*s)).min_by_key(|(_, s)| area(*s)) {
            Some((l, _)) => l.ssrc,
            None => sized.iter().max_by_key(|(_, s)| area(*s)).map(|(l, _)| l.ssrc)?,
        };
        Some(best)
    }

    /// Usable layers whose size is still unknown: their first keyframe
    /// (with its SPS) was lost, e.g. sent before their receive track
    /// existed. The reader asks them for one, or the choice could never
    /// learn that a larger layer covers the need.
    pub fn unsized_layers(&self) -> impl Iterator<Item = u32> + '_ {
        self.layers.iter().filter(|l| !l.refused && l.size.is_none()).map(|l| l.ssrc)
    }

    /// Whether the reader should ask `target()` for a keyframe: it is not
    /// the layer being decoded yet.
    pub fn switch_pending(&self) -> Option<u32> {
        let t = self.target()?;
        (Some(t) != self.active).then_some(t)
    }

    /// An access unit from layer `ssrc`: `keyframe` if it is an IDR,
    /// `sps` the size its SPS announces (if it carries one; `Err` if the
    /// SPS is unreadable).
    pub fn unit<E>(&mut self, ssrc: u32, keyframe: bool, sps: Option<Result<(u32, u32), E>>) -> Verdict {
        self.layer(ssrc, None);
        let limit_ok = match &sps {
            Some(Ok(size)) => Some(self.within_limit(*size)),
            Some(Err(_)) => Some(false),
            None => None,
        };
        let Some(layer) = self.layers.iter_mut().find(|l| l.ssrc == ssrc) else { return Verdict::Skip };
        if let Some(ok) = limit_ok {
            layer.size = sps.as_ref().and_then(|r| r.as_ref().ok().copied());
            layer.refused = !ok;
        }
        if layer.refused {
            let (width, height) = layer.size.unwrap_or((0, 0));
            if self.active == Some(ssrc) {
                self.active = None;
            }
            return if std::mem::replace(&mut self.refusal_told, true) {
                Verdict::Skip
            } else {
                Verdict::Refuse { width, height }
            };
        }
        if limit_ok == Some(true) && self.layers.iter().all(|l| !l.refused) {
            self.refusal_told = false;
        }
        let target = self.target();
        if Some(ssrc) == self.active && (target == self.active || !keyframe || target.is_none()) {
            return Verdict::Decode;
        }
        // Switch to the target layer on its keyframe (the decoder takes
        // the new size from its SPS).
        if Some(ssrc) == target && keyframe {
            self.active = Some(ssrc);
            return Verdict::Decode;
        }
        if Some(ssrc) == self.active {
            return Verdict::Decode; // keep showing it until the target's keyframe
        }
        Verdict::Skip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sps = Option<Result<(u32, u32), ()>>;
    const Q: u32 = 1;
    const H: u32 = 2;
    const F: u32 = 3;

    #[test]
    fn layers_of_unknown_size_are_named_until_their_sps_comes() {
        let mut c = LayerChoice::new((1920, 1080));
        for (ssrc, rid) in [(Q, "q"), (H, "h"), (F, "f")] {
            c.layer(ssrc, Some(rid.into()));
        }
        c.set_need(Some((640, 360)));
        // Only the smallest layer's first keyframe got through.
        assert_eq!(c.unit::<()>(Q, true, Some(Ok((320, 180)))), Verdict::Decode);
        assert_eq!(c.target(), Some(Q), "nothing known covers the need yet");
        assert_eq!(c.unsized_layers().collect::<Vec<_>>(), [H, F]);
        // A keyframe on f (asked for because its size is unknown) settles it.
        assert_eq!(c.unit::<()>(F, true, Some(Ok((1280, 720)))), Verdict::Decode);
        assert_eq!(c.unsized_layers().collect::<Vec<_>>(), [H]);
        assert_eq!(c.unit::<()>(H, true, Some(Ok((640, 360)))), Verdict::Decode);
        assert_eq!(c.active().map(|a| a.ssrc), Some(H), "the smallest layer that covers 640x360");
    }

    fn simulcast() -> LayerChoice {
        let mut c = LayerChoice::new((1920, 1080));
        for (ssrc, rid) in [(Q, "q"), (H, "h"), (F, "f")] {
            c.layer(ssrc, Some(rid.into()));
        }
        // Every layer starts with a keyframe carrying its SPS.
        let key = |w, h| -> Sps { Some(Ok((w, h))) };
        let _ = c.unit(Q, true, key(320, 180));
        let _ = c.unit(H, true, key(640, 360));
        let _ = c.unit(F, true, key(1280, 720));
        c
    }

    #[test]
    fn decodes_the_smallest_layer_that_covers_the_tile_and_switches_on_keyframes() {
        let mut c = simulcast();
        // No need known: the largest (taken on its first keyframe).
        assert_eq!(c.active().map(|a| a.ssrc), Some(F));
        assert_eq!(c.switch_pending(), None);
        assert_eq!(c.unit::<()>(F, false, None), Verdict::Decode);
        assert_eq!(c.unit::<()>(Q, false, None), Verdict::Skip);
        // A 4x4 tile of 720p: 320x180 (with borders a little less) -> q.
        c.set_need(Some((316, 176)));
        assert_eq!(c.switch_pending(), Some(Q));
        // Until q's keyframe comes, f goes on being decoded, q is skipped.
        assert_eq!(c.unit::<()>(Q, false, None), Verdict::Skip);
        assert_eq!(c.unit::<()>(F, false, None), Verdict::Decode);
        assert_eq!(c.unit::<()>(Q, true, Some(Ok((320, 180)))), Verdict::Decode);
        assert_eq!(c.active().and_then(|a| a.rid), Some("q"));
        assert_eq!(c.unit::<()>(F, false, None), Verdict::Skip);
        assert_eq!(c.switch_pending(), None);
        // The speaker's tile, 960x540: f (h would be upscaled).
        c.set_need(Some((960, 540)));
        assert_eq!(c.switch_pending(), Some(F));
        // A tile slightly larger than a layer still takes that layer.
        c.set_need(Some((660, 370)));
        assert_eq!(c.target(), Some(H));
    }

    #[test]
    fn a_stream_above_the_limit_is_refused_once_and_never_decoded() {
        let mut c = LayerChoice::new((1920, 1080));
        c.layer(9, None);
        assert_eq!(c.unit::<()>(9, true, Some(Ok((3840, 2160)))), Verdict::Refuse { width: 3840, height: 2160 });
        assert_eq!(c.unit::<()>(9, false, None), Verdict::Skip);
        assert_eq!(c.unit::<()>(9, true, Some(Ok((3840, 2160)))), Verdict::Skip);
        // A portrait 1080x1920 is within a 1920x1080 limit.
        assert_eq!(c.unit::<()>(9, true, Some(Ok((1080, 1920)))), Verdict::Decode);
        // An unreadable SPS is refused too.
        assert!(matches!(c.unit(9, true, Some(Err(()))), Verdict::Refuse { .. }));
        // Simulcast: the oversized layer is avoided, the others serve.
        let mut c = LayerChoice::new((1280, 720));
        c.layer(1, Some("q".into()));
        c.layer(2, Some("f".into()));
        assert!(matches!(c.unit::<()>(2, true, Some(Ok((2560, 1440)))), Verdict::Refuse { .. }));
        assert_eq!(c.unit::<()>(1, true, Some(Ok((640, 360)))), Verdict::Decode);
    }

    #[test]
    fn hostile_layer_counts_are_bounded() {
        let mut c = LayerChoice::new((1920, 1080));
        for ssrc in 0..1000 {
            c.layer(ssrc, None);
            let _ = c.unit::<()>(ssrc, true, Some(Ok((64, 64))));
        }
        assert_eq!(c.layers(), MAX_LAYERS);
    }
}
