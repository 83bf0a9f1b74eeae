//! What `/metrics` reports, in one place: the names, their labels and the
//! few functions the server's edges call to record them.
//!
//! Figures the room task already keeps (its members, its views' counters,
//! its members' downstream estimates) are copied into gauges and counters
//! once a second ([`room`]); events the edges see (a refusal, a broker
//! reconnect, a decode error) are counted where they happen: only the
//! decoder threads count one thing themselves, their errors. Values are kept by the `metrics`
//! crate's recorder and rendered in Prometheus text format by
//! `metrics-exporter-prometheus`; series of a room that closed (no update
//! for [`IDLE`]) disappear from the output.

use crate::pipeline::view::ViewStats;
use crate::signaling::protocol::ErrorCode;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A series not updated this long is dropped (its room closed).
pub const IDLE: Duration = Duration::from_secs(30);

/// Renders the current values as Prometheus text.
#[derive(Clone)]
pub struct Metrics(PrometheusHandle);

impl Metrics {
    /// Installs the process-wide recorder. `None` if one is installed
    /// already (a second server in the same process): that server then
    /// serves no metrics rather than another's.
    pub fn install() -> Option<Metrics> {
        let handle = PrometheusBuilder::new().idle_timeout(MetricKindMask::ALL, Some(IDLE)).install_recorder();
        match handle {
            Ok(h) => {
                describe();
                Some(Metrics(h))
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                None
            }
        }
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        self.0.render()
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_gauge!("tessera_rooms", "Rooms open on this server.");
    describe_gauge!("tessera_room_members", "Members of a room, by role.");
    describe_gauge!("tessera_room_views", "Distinct views (shared encoders) a room renders.");
    describe_gauge!("tessera_room_recording", "1 while the room is being recorded.");
    describe_gauge!("tessera_view_tiers", "Quality tiers a view encodes.");
    describe_gauge!("tessera_view_subscribers", "Members who receive a view.");
    describe_counter!("tessera_view_frames_rendered_total", "Composites a view drew.");
    describe_counter!("tessera_view_frames_encoded_total", "Frames a view encoded, all tiers.");
    describe_counter!("tessera_view_frames_late_total", "Draws later than two frame periods.");
    describe_counter!("tessera_view_frames_dropped_total", "Encoded frames a member's queue had no room for.");
    describe_counter!(
        "tessera_view_frames_skipped_busy_total",
        "Canvases a tier's encoder had no time for (it was still encoding the one before)."
    );
    describe_gauge!("tessera_view_render_seconds", Unit::Seconds, "Mean time to draw one composite, last second.");
    describe_gauge!(
        "tessera_view_encode_seconds",
        Unit::Seconds,
        "Mean time to encode one frame (any tier), last second."
    );
    describe_gauge!("tessera_member_downstream_estimate_bps", "What a member's downstream link is estimated to carry.");
    describe_gauge!("tessera_member_downstream_sent_bps", "Video bits per second sent to a member.");
    describe_gauge!("tessera_member_downstream_loss_ratio", "Loss in a member's last receiver report.");
    describe_gauge!(
        "tessera_member_downstream_tier",
        "The tier a member receives, by rank (0 = the view's best tier)."
    );
    describe_counter!("tessera_downstream_frames_skipped_total", "Frames skipped because a member's link fell behind.");
    describe_counter!("tessera_decode_errors_total", "Inbound H.264 access units that did not decode.");
    describe_counter!("tessera_signaling_errors_total", "Refusals sent to clients, by error code.");
    describe_counter!("tessera_broker_reconnects_total", "Times the broker link came back after a drop.");
    describe_counter!("tessera_recordings_total", "Recordings started.");
    describe_counter!(
        "tessera_cluster_rooms_taken_over_total",
        "Rooms this node took over from a dead or draining node."
    );
    describe_counter!("tessera_cluster_rooms_yielded_total", "Rooms this node gave up to a node with a higher epoch.");
    describe_gauge!("tessera_http_up", "1 while the HTTP listener serves.");
    describe_gauge!("tessera_http_sessions", "Live WHIP and WHEP sessions.");
}

/// A refusal went to a client.
pub fn signaling_error(code: ErrorCode) {
    counter!("tessera_signaling_errors_total", "code" => code.as_str()).increment(1);
}

/// The broker link came back.
pub fn broker_reconnect() {
    counter!("tessera_broker_reconnects_total").increment(1);
}

/// This cluster node took a room over.
pub fn room_taken_over() {
    counter!("tessera_cluster_rooms_taken_over_total").increment(1);
}

/// This cluster node yielded a room to a higher epoch.
pub fn room_moved() {
    counter!("tessera_cluster_rooms_yielded_total").increment(1);
}

/// A member's downstream skipped frames until a keyframe.
pub fn frames_skipped(n: u64) {
    counter!("tessera_downstream_frames_skipped_total").increment(n);
}

/// A recording started.
pub fn recording_started() {
    counter!("tessera_recordings_total").increment(1);
}

/// Server-wide figures, refreshed by the dispatcher. Also keeps the
/// event counters present (at 0 until something happens) and fresh.
pub fn server(rooms: usize) {
    gauge!("tessera_rooms").set(rooms as f64);
    counter!("tessera_broker_reconnects_total").increment(0);
    counter!("tessera_decode_errors_total").increment(0);
    counter!("tessera_downstream_frames_skipped_total").increment(0);
    counter!("tessera_recordings_total").increment(0);
}

/// One view's figures.
pub struct ViewFigures {
    /// `{layout}-{width}x{height}`.
    pub name: String,
    /// Tiers encoded.
    pub tiers: usize,
    /// Members receiving it.
    pub subscribers: usize,
    /// Counters since the view started.
    pub rendered: u64,
    /// Frames encoded.
    pub encoded: u64,
    /// Late draws.
    pub late: u64,
    /// Frames members' queues refused.
    pub dropped: u64,
    /// Canvases tiers had no time for.
    pub busy: u64,
    /// Mean draw time over the last interval, if it drew.
    pub render_seconds: Option<f64>,
    /// Mean encode time over the last interval, if it encoded.
    pub encode_seconds: Option<f64>,
}

/// One member's downstream.
pub struct MemberFigures {
    /// Peer id.
    pub peer: String,
    /// Estimate, bits/s.
    pub estimate: u32,
    /// Video sent, bits/s.
    pub sent: u32,
    /// Loss, 0..1.
    pub loss: f64,
    /// Tier level.
    pub tier: Option<u32>,
}

/// One room's figures, refreshed by its task.
pub struct RoomFigures<'a> {
    /// Room id.
    pub room: &'a str,
    /// Members by role name.
    pub roles: [(&'static str, usize); 3],
    /// Recording now.
    pub recording: bool,
    /// Its views.
    pub views: Vec<ViewFigures>,
    /// Its members' downstreams.
    pub members: Vec<MemberFigures>,
}

/// Copies a room's figures into the recorder.
pub fn room(f: &RoomFigures<'_>) {
    let room = f.room.to_owned();
    for (role, n) in f.roles {
        gauge!("tessera_room_members", "room" => room.clone(), "role" => role).set(n as f64);
    }
    gauge!("tessera_room_views", "room" => room.clone()).set(f.views.len() as f64);
    gauge!("tessera_room_recording", "room" => room.clone()).set(if f.recording { 1.0 } else { 0.0 });
    for v in &f.views {
        let labels = [("room", room.clone()), ("view", v.name.clone())];
        gauge!("tessera_view_tiers", &labels).set(v.tiers as f64);
        gauge!("tessera_view_subscribers", &labels).set(v.subscribers as f64);
        counter!("tessera_view_frames_rendered_total", &labels).absolute(v.rendered);
        counter!("tessera_view_frames_encoded_total", &labels).absolute(v.encoded);
        counter!("tessera_view_frames_late_total", &labels).absolute(v.late);
        counter!("tessera_view_frames_dropped_total", &labels).absolute(v.dropped);
        counter!("tessera_view_frames_skipped_busy_total", &labels).absolute(v.busy);
        if let Some(s) = v.render_seconds {
            gauge!("tessera_view_render_seconds", &labels).set(s);
        }
        if let Some(s) = v.encode_seconds {
            gauge!("tessera_view_encode_seconds", &labels).set(s);
        }
    }
    for m in &f.members {
        let labels = [("room", room.clone()), ("peer", m.peer.clone())];
        gauge!("tessera_member_downstream_estimate_bps", &labels).set(m.estimate as f64);
        gauge!("tessera_member_downstream_sent_bps", &labels).set(m.sent as f64);
        gauge!("tessera_member_downstream_loss_ratio", &labels).set(m.loss);
        if let Some(t) = m.tier {
            gauge!("tessera_member_downstream_tier", &labels).set(t as f64);
        }
    }
}

/// Turns a room's views' running counters into per-interval means.
#[derive(Default)]
pub struct RoomMeter {
    /// Per view name: frames, render µs, encoded, encode µs at the last look.
    last: HashMap<String, [u64; 4]>,
}

impl RoomMeter {
    /// One view's figures now; means are over the time since the last call.
    pub fn view(&mut self, name: String, tiers: usize, subscribers: usize, stats: &ViewStats) -> ViewFigures {
        let now = [
            stats.frames.load(Ordering::Relaxed),
            stats.render_us.load(Ordering::Relaxed),
            stats.encoded.load(Ordering::Relaxed),
            stats.encode_us.load(Ordering::Relaxed),
        ];
        let before = self.last.insert(name.clone(), now).unwrap_or_default();
        // A view started again (same name) counts from zero.
        let d: Vec<u64> = now.iter().zip(before).map(|(n, b)| if *n >= b { n - b } else { *n }).collect();
        let mean = |us: u64, n: u64| (n > 0).then(|| us as f64 / n as f64 / 1e6);
        ViewFigures {
            name,
            tiers,
            subscribers,
            rendered: now[0],
            encoded: now[2],
            late: stats.late.load(Ordering::Relaxed),
            dropped: stats.dropped.load(Ordering::Relaxed),
            busy: stats.busy.load(Ordering::Relaxed),
            render_seconds: mean(d[1], d[0]),
            encode_seconds: mean(d[3], d[2]),
        }
    }

    /// Forgets views no longer there.
    pub fn retain(&mut self, names: &[String]) {
        self.last.retain(|k, _| names.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_are_per_interval() {
        let stats = ViewStats::default();
        let mut m = RoomMeter::default();
        stats.frames.store(10, Ordering::Relaxed);
        stats.render_us.store(20_000, Ordering::Relaxed);
        let f = m.view("grid-640x360".into(), 1, 2, &stats);
        assert_eq!(f.render_seconds, Some(0.002));
        assert_eq!(f.encode_seconds, None);
        stats.frames.store(20, Ordering::Relaxed);
        stats.render_us.store(60_000, Ordering::Relaxed);
        let f = m.view("grid-640x360".into(), 1, 2, &stats);
        assert_eq!(f.render_seconds, Some(0.004));
        assert_eq!(f.rendered, 20);
    }
}
