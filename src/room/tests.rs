//! The room's rules, driven with inputs and checked by its outputs.

use super::*;
use std::path::PathBuf;

fn library() -> Arc<BTreeMap<String, Arc<Layout>>> {
    let (layouts, errors) = crate::layout::load_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layouts"));
    assert!(errors.is_empty());
    Arc::new(layouts)
}

fn room(max: usize) -> Room {
    let lib = library();
    let grid = lib["grid"].clone();
    Room::new("r1", grid, lib, RoomConfig { max_participants: max, ..RoomConfig::default() })
}

fn join(peer: &str, role: Role) -> Join {
    Join { peer: peer.into(), name: None, role, audio: true, video: role != Role::Viewer, view: None }
}

fn drain(r: &mut Room) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn last_state(out: &[Output]) -> Option<&RoomState> {
    out.iter().rev().find_map(|o| if let Output::State(s) = o { Some(s) } else { None })
}

const T: Duration = Duration::from_secs(1);

#[test]
fn joins_publish_state_scene_and_views() {
    let mut r = room(16);
    r.join(T, join("alice", Role::Participant)).unwrap();
    r.join(T, join("tv", Role::Viewer)).unwrap();
    r.join(T, join("cam", Role::Source)).unwrap();
    let out = drain(&mut r);
    let state = last_state(&out).unwrap();
    assert_eq!(state.participants.iter().map(|p| p.peer.as_str()).collect::<Vec<_>>(), ["alice", "tv", "cam"]);
    assert_eq!(state.participants[1].role, "viewer");
    assert_eq!(state.layout, "grid");
    // Tiles: participant and source, not the viewer.
    let scene = out.iter().rev().find_map(|o| if let Output::Scene(s) = o { Some(s) } else { None }).unwrap();
    assert_eq!(scene.tiles.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["alice", "cam"]);
    // Views: alice and tv share the default view; the source gets none.
    let views = r.views();
    assert_eq!(views.len(), 1);
    assert_eq!(views.values().next().unwrap(), &vec!["alice".to_string(), "tv".to_string()]);
}

#[test]
fn a_smaller_view_is_a_separate_encoder_and_equal_ones_share() {
    let mut r = room(16);
    r.join(T, join("a", Role::Participant)).unwrap();
    let small = |p: &str| Join { view: Some(ViewRequest { width: 640, height: 360 }), ..join(p, Role::Viewer) };
    r.join(T, small("tv1")).unwrap();
    r.join(T, small("tv2")).unwrap();
    let views = r.views();
    assert_eq!(views.len(), 2);
    let (small_key, watchers) = views.iter().find(|(k, _)| k.width == 640).unwrap();
    assert_eq!(watchers, &vec!["tv1".to_string(), "tv2".to_string()]);
    assert_eq!(small_key.height, 360);
    assert!(small_key.bitrate < views.keys().find(|k| k.width == 1280).unwrap().bitrate);
}

#[test]
fn a_full_room_refuses_newcomers_but_not_rejoins() {
    let mut r = room(2);
    r.join(T, join("a", Role::Participant)).unwrap();
    r.join(T, join("b", Role::Participant)).unwrap();
    assert_eq!(r.join(T, join("c", Role::Participant)).unwrap_err().code, ErrorCode::RoomFull);
    drain(&mut r);
    // b re-joins: old session closed, same place in the join order.
    r.join(T, join("b", Role::Viewer)).unwrap();
    let out = drain(&mut r);
    assert!(out.contains(&Output::Close { peer: "b".into() }));
    assert_eq!(r.members().iter().map(|m| m.peer.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(r.member("b").unwrap().role, Role::Viewer);
}

#[test]
fn leaving_reflows_and_the_last_one_out_closes_the_room() {
    let mut r = room(16);
    r.join(T, join("a", Role::Participant)).unwrap();
    r.join(T, join("b", Role::Participant)).unwrap();
    drain(&mut r);
    r.leave(T, "a", Leave::Lost("ICE failed".into()));
    let out = drain(&mut r);
    assert!(out.contains(&Output::Bye { peer: "a".into(), reason: "ICE failed".into() }));
    assert_eq!(last_state(&out).unwrap().participants.len(), 1);
    r.leave(T, "b", Leave::Requested);
    let out = drain(&mut r);
    assert!(out.contains(&Output::Close { peer: "b".into() }));
    assert_eq!(out.last(), Some(&Output::Empty));
    r.leave(T, "nobody", Leave::Requested);
    assert!(drain(&mut r).is_empty());
}

#[test]
fn control_switches_layout_mutes_and_kicks() {
    let mut r = room(16);
    r.join(T, join("a", Role::Participant)).unwrap();
    r.join(T, join("b", Role::Participant)).unwrap();
    drain(&mut r);
    let ctl = |command| ControlMessage { from: Some("a".into()), command };

    r.control(T, ctl(Control::Layout("speaker".into())));
    let out = drain(&mut r);
    assert_eq!(last_state(&out).unwrap().layout, "speaker");
    assert!(r.views().keys().all(|k| k.layout == "speaker"));

    r.control(T, ctl(Control::Layout("nope".into())));
    let out = drain(&mut r);
    assert!(
        matches!(&out[..], [Output::Error { peer: Some(p), error }] if p == "a" && error.code == ErrorCode::UnknownLayout)
    );

    r.control(T * 2, ctl(Control::Mute { peer: "b".into(), audio: true }));
    let out = drain(&mut r);
    let b_id = r.member("b").unwrap().id;
    assert!(out.contains(&Output::Mute { id: b_id, muted: true }));
    assert!(!last_state(&out).unwrap().participants[1].audio);

    r.control(T * 2, ControlMessage { from: None, command: Control::Kick { peer: "zed".into() } });
    assert!(
        matches!(&drain(&mut r)[..], [Output::Error { peer: None, error }] if error.code == ErrorCode::UnknownPeer)
    );

    r.control(T * 2, ctl(Control::Kick { peer: "b".into() }));
    let out = drain(&mut r);
    assert!(out.contains(&Output::Bye { peer: "b".into(), reason: "kicked".into() }));
}

#[test]
fn the_speaker_takes_the_floor_after_the_hold_and_state_says_so() {
    let mut r = room(16);
    let a = r.join(T, join("a", Role::Participant)).unwrap();
    let b = r.join(T, join("b", Role::Participant)).unwrap();
    drain(&mut r);
    let mut now = T;
    let mut step = |r: &mut Room, la: u8, lb: u8, ms: u64| {
        let mut outs = Vec::new();
        for _ in 0..ms / 20 {
            now += Duration::from_millis(20);
            r.levels(now, &[(a, la), (b, lb)]);
            outs.extend(drain(r));
        }
        outs
    };
    let out = step(&mut r, 20, 127, 400);
    assert_eq!(last_state(&out).unwrap().speaker.as_deref(), Some("a"));
    assert!(last_state(&out).unwrap().participants[0].speaking);
    // b talks: not the speaker before the 1.5 s hold, the speaker after.
    let out = step(&mut r, 127, 20, 1000);
    assert_ne!(r.state().speaker.as_deref(), Some("b"));
    assert!(!out.iter().any(|o| matches!(o, Output::Scene(s) if s.speaker == Some(b))));
    let out = step(&mut r, 127, 20, 1000);
    assert_eq!(r.state().speaker.as_deref(), Some("b"));
    assert!(out.iter().any(|o| matches!(o, Output::Scene(s) if s.speaker == Some(b))));
    // Speaking flips are throttled: at most one state per 250 ms.
    let out = step(&mut r, 20, 20, 1000);
    assert!(out.iter().filter(|o| matches!(o, Output::State(_))).count() <= 4);
}

#[test]
fn a_muted_member_cannot_take_the_floor() {
    let mut r = room(16);
    let a = r.join(T, join("a", Role::Participant)).unwrap();
    r.join(T, join("b", Role::Participant)).unwrap();
    r.control(T, ControlMessage { from: None, command: Control::Mute { peer: "a".into(), audio: true } });
    for i in 0..100 {
        r.levels(T + Duration::from_millis(20 * i), &[(a, 10)]);
    }
    assert_eq!(r.state().speaker, None);
}

#[test]
fn shutdown_says_bye_to_everyone() {
    let mut r = room(16);
    r.join(T, join("a", Role::Participant)).unwrap();
    r.join(T, join("b", Role::Viewer)).unwrap();
    drain(&mut r);
    r.shutdown(T);
    let out = drain(&mut r);
    let byes =
        out.iter().filter(|o| matches!(o, Output::Bye { reason, .. } if reason == "server shutting down")).count();
    assert_eq!(byes, 2);
    assert_eq!(out.last(), Some(&Output::Empty));
}

#[test]
fn a_departing_member_frees_its_place() {
    let mut r = room(2);
    r.join(T, join("a", Role::Participant)).unwrap();
    r.join(T, join("b", Role::Participant)).unwrap();
    assert_eq!(r.join(T, join("c", Role::Participant)).unwrap_err().code, ErrorCode::RoomFull);
    r.depart("b");
    r.join(T, join("c", Role::Participant)).unwrap();
    // b turns out to stay: the room is over by one until someone leaves.
    r.stay("b");
    assert_eq!(r.members().len(), 3);
    assert_eq!(r.join(T, join("d", Role::Participant)).unwrap_err().code, ErrorCode::RoomFull);
    r.leave(T, "a", Leave::Requested);
    r.leave(T, "b", Leave::Requested);
    r.join(T, join("d", Role::Participant)).unwrap();
}

#[test]
fn senders_are_told_their_tile_size_and_speaker_changes_do_not_flap() {
    let mut r = room(16);
    r.join(T, join("tv", Role::Viewer)).unwrap();
    for p in ["a", "b", "c", "d", "e"] {
        r.join(T, join(p, Role::Participant)).unwrap();
    }
    let hints = |out: &[Output]| -> Vec<(String, SendHint)> {
        out.iter()
            .filter_map(|o| match o {
                Output::SendHint { peer, hint } => Some((peer.clone(), *hint)),
                _ => None,
            })
            .collect()
    };
    let mut told = hints(&drain(&mut r));
    // Each was told at once when it joined (the first alone, full size);
    // the smaller boxes of a fuller room follow after GROW_AFTER.
    r.tick(T + hints::GROW_AFTER);
    told.extend(hints(&drain(&mut r)));
    // Every sender heard; the viewer, who sends nothing, did not. With five
    // tiles in a 3x2 grid of 1280x720 each box is at most 1280/3 wide.
    let last_for = |peer: &str| told.iter().rev().find(|(p, _)| p == peer).map(|(_, h)| *h);
    for p in ["a", "b", "c", "d", "e"] {
        let h = last_for(p).unwrap_or_else(|| panic!("{p} not told"));
        assert!(h.width <= 428 && h.height <= 360, "{p}: {h:?}");
    }
    assert!(last_for("tv").is_none());
    // The speaker layout: the speaker's box grows, after GROW_AFTER.
    r.control(T, ControlMessage { from: None, command: Control::Layout("speaker".into()) });
    drain(&mut r);
    let mut t = T + hints::SHRINK_AFTER;
    let speak = |r: &mut Room, t: &mut Duration, who: &str, secs: u64| -> Vec<(Duration, String, SendHint)> {
        let mut seen = Vec::new();
        for _ in 0..secs * 50 {
            *t += Duration::from_millis(20);
            let levels: Vec<(u64, u8)> =
                r.members().iter().map(|m| (m.id, if m.peer == who { 20 } else { 127 })).collect();
            r.levels(*t, &levels);
            r.tick(*t);
            seen.extend(hints(&drain(r)).into_iter().map(|(p, h)| (*t, p, h)));
        }
        seen
    };
    // a holds the floor: its box is the big one.
    let first = speak(&mut r, &mut t, "a", 5);
    assert!(first.iter().any(|(_, p, h)| p == "a" && h.width > 640), "{first:?}");
    assert_eq!(r.state().speaker.as_deref(), Some("a"));
    // c takes over: c is asked for more soon after it takes the floor; a
    // is asked for less only once that has held for SHRINK_AFTER.
    let from = t;
    let then = speak(&mut r, &mut t, "c", 8);
    let c_big = then.iter().find(|(_, p, h)| p == "c" && h.width > 640).map(|x| x.0).expect("c never asked for more");
    let a_small =
        then.iter().find(|(_, p, h)| p == "a" && h.width <= 640).map(|x| x.0).expect("a never asked for less");
    assert!(c_big - from >= hints::GROW_AFTER, "c grew {:?} after it began", c_big - from);
    assert!(a_small - c_big >= hints::SHRINK_AFTER - hints::GROW_AFTER, "a shrank at {a_small:?}, c grew at {c_big:?}");
    // Nobody was told twice the same thing, nor flapped.
    let a_told = then.iter().filter(|(_, p, _)| p == "a").count();
    assert_eq!(a_told, 1, "{then:?}");
}

#[test]
fn recording_watches_the_canvas_view_and_is_in_the_state() {
    let control = |command| ControlMessage { from: Some("alice".into()), command };
    // A server without a recordings folder refuses, to the sender.
    let mut off = room(16);
    off.join(T, join("alice", Role::Participant)).unwrap();
    drain(&mut off);
    off.control(T, control(Control::Record(true)));
    let out = drain(&mut off);
    assert!(out.iter().any(
        |o| matches!(o, Output::Error { peer: Some(p), error } if p == "alice" && error.code == ErrorCode::RecordingOff)
    ));
    assert!(!off.recording());

    let lib = library();
    let mut r = Room::new("r1", lib["grid"].clone(), lib, RoomConfig { can_record: true, ..RoomConfig::default() });
    r.join(T, join("alice", Role::Participant)).unwrap();
    let small = Join { view: Some(ViewRequest { width: 320, height: 180 }), ..join("tv", Role::Viewer) };
    r.join(T, small).unwrap();
    drain(&mut r);
    r.control(T, control(Control::Record(true)));
    let out = drain(&mut r);
    assert!(out.contains(&Output::Recording(true)));
    assert!(last_state(&out).unwrap().recording);
    // The recorder shares the canvas-size view with alice, not the viewer's small one.
    let views = r.views();
    let canvas = views.iter().find(|(k, _)| k.width == 1280).unwrap().1;
    assert_eq!(canvas, &vec!["alice".to_string(), RECORDER.to_string()]);
    // Asking again changes nothing; stopping takes the recorder away.
    r.control(T, control(Control::Record(true)));
    assert!(drain(&mut r).is_empty());
    r.control(T, control(Control::Record(false)));
    let out = drain(&mut r);
    assert!(out.contains(&Output::Recording(false)));
    assert!(!last_state(&out).unwrap().recording);
    assert!(r.views().values().all(|peers| !peers.iter().any(|p| p == RECORDER)));
}
