//! Layout files: parse, validate, and render whatever validates; the same
//! bytes as a FreeSWITCH layout file for `tessera layout import`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use tessera::layout::Layout;
use tessera::media::compositor::{placements, Compositor, Source};
use tessera::media::frame::VideoFrame;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let canvas = tessera::layout::import::ImportCanvas { width: 1280, height: 720, fps: 30 };
    let _ = tessera::layout::import::import(text, canvas);
    let Ok(layout) = Layout::parse(text, "fuzz.toml") else { return };
    let layout = Arc::new(layout);
    // Render small canvases with a few participants through every variant.
    let frame = VideoFrame::new(64, 36, Default::default()).unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("p{i}")).collect();
    for n in [1usize, 2, 5] {
        let sources: Vec<Source<'_>> = (0..n)
            .map(|i| Source {
                id: i as u64,
                name: &names[i],
                frame: (i % 2 == 0).then(|| frame.as_frame()),
                generation: 1,
            })
            .collect();
        for (w, h) in [(64u32, 36u32), (130, 74)] {
            if let Ok(mut c) = Compositor::new(w, h) {
                c.render(&layout, &sources, Some(1));
            }
            let ids: Vec<u64> = (0..n as u64).collect();
            let _ = placements(&layout, &ids, Some(0), w, h);
        }
    }
});
