//! Round trips through the real codec: quality, keyframes on demand, and
//! errors (not panics) on damaged input.

use super::*;
use crate::media::analysis::psnr;
use crate::media::frame::VideoFrame;
use crate::media::pattern::{palette, TestPattern};

/// Encodes `n` frames of the moving pattern; returns each access unit and
/// a copy of its source picture.
fn encode_pattern(w: u32, h: u32, n: usize, bitrate: u32) -> (Vec<(Vec<u8>, bool)>, Vec<VideoFrame>) {
    let mut enc = H264Encoder::new(H264Config::new(w, h, 15, bitrate)).unwrap();
    let mut pattern = TestPattern::new(w as usize, h as usize, palette(1), "Round Trip").unwrap();
    let mut units = Vec::new();
    let mut sources = Vec::new();
    for i in 0..n {
        let t = i as u64 * 66;
        let frame = pattern.render(t, i as u32);
        let mut copy = VideoFrame::default();
        copy.copy_from(&frame).unwrap();
        if let Some(out) = enc.encode(&frame, Duration::from_millis(t)).unwrap() {
            units.push((out.data.to_vec(), out.keyframe));
            sources.push(copy);
        }
    }
    (units, sources)
}

#[test]
fn moving_pictures_survive_a_round_trip() {
    for (w, h, bitrate) in [(320u32, 240u32, 300_000u32), (640, 360, 600_000)] {
        let (units, sources) = encode_pattern(w, h, 30, bitrate);
        assert!(units.len() >= 25, "rate control skipped {} of 30 frames", 30 - units.len());
        let mut dec = H264Decoder::new().unwrap();
        let mut worst = f64::INFINITY;
        for ((unit, _), source) in units.iter().zip(&sources) {
            let decoded = dec.decode(unit).unwrap().expect("a picture per access unit");
            let picture = decoded.frame();
            assert_eq!((picture.width(), picture.height()), (w as usize, h as usize));
            worst = worst.min(psnr(&picture, &source.as_frame()));
        }
        // Flat colour, text and a moving bar at these rates: comfortably above 32 dB.
        assert!(worst > 32.0, "{w}x{h}: worst PSNR {worst:.1} dB");
    }
}

#[test]
fn the_first_frame_and_a_forced_one_are_idr_with_parameter_sets() {
    let mut enc = H264Encoder::new(H264Config::new(320, 240, 15, 300_000)).unwrap();
    let mut pattern = TestPattern::new(320, 240, palette(0), "K").unwrap();
    let mut kinds = Vec::new();
    for i in 0..20u64 {
        if i == 12 {
            enc.force_keyframe();
        }
        let frame = pattern.render(i * 66, 0);
        let out = enc.encode(&frame, Duration::from_millis(i * 66)).unwrap().unwrap();
        let types: Vec<u8> = nal_units(out.data).filter_map(nal_type).collect();
        assert_eq!(out.keyframe, is_keyframe(out.data), "frame {i}: {types:?}");
        if out.keyframe {
            assert!(types.contains(&7) && types.contains(&8) && types.contains(&5), "frame {i}: {types:?}");
            // Baseline profile (66) in the SPS.
            let sps = nal_units(out.data).find(|n| nal_type(n) == Some(7)).unwrap();
            assert_eq!(sps[1], 66);
        }
        kinds.push(out.keyframe);
    }
    assert!(kinds[0], "first frame is not a keyframe");
    assert!(kinds[12], "forced keyframe missing");
    assert_eq!(kinds.iter().filter(|&&k| k).count(), 2, "{kinds:?}");
}

#[test]
fn damaged_streams_are_errors_not_panics() {
    let (units, _) = encode_pattern(320, 240, 6, 300_000);
    // A P-frame before any keyframe: no parameter sets.
    let mut dec = H264Decoder::new().unwrap();
    assert!(dec.decode(&units[3].0).is_err());

    // A truncated keyframe.
    let mut dec = H264Decoder::new().unwrap();
    let idr = &units[0].0;
    let cut = &idr[..idr.len() / 2];
    assert!(dec.decode(cut).is_err(), "truncated IDR decoded cleanly");

    // Garbage after a start code, and random bytes without one.
    let mut dec = H264Decoder::new().unwrap();
    let mut garbage = vec![0, 0, 0, 1, 0x65];
    garbage.extend((0..500u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    assert!(dec.decode(&garbage).is_err());
    let _ = dec.decode(&[0xff; 64]);
    let _ = dec.decode(&[0, 0, 1]);

    // Corrupted payload bytes in every later frame: whatever comes back,
    // the decoder survives and decodes a clean keyframe afterwards.
    let mut dec = H264Decoder::new().unwrap();
    dec.decode(&units[0].0).unwrap();
    for (unit, _) in &units[1..] {
        let mut bad = unit.clone();
        for i in (20..bad.len()).step_by(7) {
            bad[i] ^= 0x5a;
        }
        let _ = dec.decode(&bad);
    }
    assert!(dec.decode(&units[0].0).unwrap().is_some());
}

#[test]
fn wrong_sizes_and_settings_are_refused() {
    assert!(H264Encoder::new(H264Config::new(321, 240, 15, 300_000)).is_err());
    assert!(H264Encoder::new(H264Config::new(320, 240, 0, 300_000)).is_err());
    let mut enc = H264Encoder::new(H264Config::new(320, 240, 15, 300_000)).unwrap();
    let other = VideoFrame::new(640, 360, Default::default()).unwrap();
    assert!(enc.encode(&other.as_frame(), Duration::ZERO).is_err());
}

#[test]
fn annex_b_splits_into_nal_units() {
    let data = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5];
    let nals: Vec<&[u8]> = nal_units(&data).collect();
    assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4, 5][..]]);
    assert!(is_keyframe(&data));
    assert!(!is_keyframe(&data[..13]));
    assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    assert_eq!(nal_units(&[]).count(), 0);
}

#[test]
fn bitrate_and_frame_rate_change_live_without_a_keyframe() {
    use crate::media::scene::CameraScene;
    let mut scene = CameraScene::new(320, 240, palette(4), "x").unwrap();
    // No periodic keyframe, so any keyframe would be the change's doing.
    let config = H264Config { keyframe_interval: 0, ..H264Config::new(320, 240, 15, 600_000) };
    let mut enc = H264Encoder::new(config).unwrap();
    let mut clock = 0u64;
    let mut spent = |enc: &mut H264Encoder, frames: u64, step_ms: u64| {
        let (mut bytes, mut keyframes) = (0usize, 0);
        for _ in 0..frames {
            let t = Duration::from_millis(clock);
            clock += step_ms;
            let f = scene.render(t.as_millis() as u64, 0);
            if let Some(e) = enc.encode(&f, t).unwrap() {
                bytes += e.data.len();
                keyframes += usize::from(e.keyframe);
            }
        }
        (bytes as f64 * 8.0 / (frames * step_ms) as f64, keyframes)
    };
    let (high, _) = spent(&mut enc, 45, 66);
    enc.set_bitrate(150_000).unwrap();
    let (_, settle_keys) = spent(&mut enc, 15, 66);
    let (low, low_keys) = spent(&mut enc, 45, 66);
    assert!(high > 450.0, "{high:.0} kbps at 600");
    assert!(low < 200.0 && low > 80.0, "{low:.0} kbps after asking for 150");
    assert_eq!(settle_keys + low_keys, 0, "a bitrate change must not force a keyframe");
    // Half the frame rate at the same bitrate: the bitrate holds.
    enc.set_fps(7.5).unwrap();
    let (slow, slow_keys) = spent(&mut enc, 30, 133);
    assert!(slow > 100.0 && slow < 200.0, "{slow:.0} kbps at 7.5 fps, asking for 150");
    assert_eq!(slow_keys, 0, "a frame rate change must not force a keyframe");
    // Back to 15 fps and above the rate it was made with: accepted, followed.
    enc.set_fps(15.0).unwrap();
    enc.set_bitrate(1_200_000).unwrap();
    let (_, rise_keys) = spent(&mut enc, 15, 66);
    let (risen, risen_keys) = spent(&mut enc, 45, 66);
    assert!(risen > 700.0, "{risen:.0} kbps after asking for 1 200");
    assert_eq!(rise_keys + risen_keys, 0, "a rise must not force a keyframe");
}

#[test]
fn the_sps_tells_the_picture_size_before_decoding() {
    for (w, h) in [(320u32, 240u32), (1280, 720), (642, 362)] {
        let (units, _) = encode_pattern(w, h, 2, 300_000);
        let (first, _) = &units[0];
        assert_eq!(sps_size(first).unwrap().unwrap(), (w, h));
        // P frames carry no SPS.
        assert!(sps_size(&units[1].0).is_none());
    }
    // A damaged SPS is an error, not a panic.
    let (units, _) = encode_pattern(320, 240, 1, 300_000);
    let sps_start = units[0].0.windows(4).position(|w| w == [0, 0, 1, 0x67]).unwrap() + 3;
    for cut in 1..12 {
        let mut damaged = units[0].0[..sps_start + cut].to_vec();
        damaged.extend_from_slice(&[0, 0, 1, 0x68, 0xff]);
        let _ = sps_size(&damaged);
    }
    assert!(sps_size(&[0, 0, 1, 0x67, 0xff, 0xff, 0xff, 0xff]).unwrap().is_err());
}

#[test]
fn rate_control_never_skips_two_pictures_in_a_row() {
    use crate::media::scene::CameraScene;
    // Camera-like content at a rate far under what it needs: openh264
    // skips pictures to keep to it, but never two in a row.
    let mut scene = CameraScene::new(640, 360, palette(2), "skip").unwrap();
    let mut enc = H264Encoder::new(H264Config::new(640, 360, 15, 40_000)).unwrap();
    let (mut skipped, mut in_a_row, mut bits) = (0, 0, 0usize);
    for i in 0..90u64 {
        let frame = scene.render(i * 66, 0);
        match enc.encode(&frame, Duration::from_millis(i * 66)).unwrap() {
            Some(out) => {
                in_a_row = 0;
                bits += out.data.len() * 8;
            }
            None => {
                skipped += 1;
                in_a_row += 1;
                assert!(in_a_row < 2, "two pictures skipped in a row at frame {i}");
            }
        }
    }
    assert!(skipped > 0, "the rate was meant to be too low to keep every picture");
    // Still near the rate asked for (6 s at 40 kbps): the picture after a
    // skip is coded coarser, not at any cost.
    let kbps = bits as f64 / 6.0 / 1000.0;
    assert!(kbps < 40.0 * 2.0, "{kbps:.0} kbps");
}
