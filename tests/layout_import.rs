//! `tessera layout import` on a file in FreeSWITCH's layout format: a
//! broken layout is named and the others still written, the converted
//! files pass `tessera layout check`, and a server started on them
//! composes a call with the imported group's geometry.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tessera::media::pattern::palette;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_freeswitch_layouts_run_a_call() {
    let out = std::env::temp_dir().join(format!("tessera-import-{}", free_port()));
    let xml = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/conference_layouts.conf.xml");
    let run = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["layout", "import"])
        .arg(&xml)
        .arg("--out")
        .arg(&out)
        .args(["--size", "640x360", "--fps", "15"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    // The file has one broken layout: named with its fault, the rest written.
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{said}{err}");
    assert!(
        err.contains("broken: image 1: scale=\"big\" is not a number") && err.contains("1 layout(s) not converted"),
        "{err}"
    );
    for name in ["grid", "1x1", "2x2", "3x3", "1up_top_left-5", "wide"] {
        assert!(out.join(format!("{name}.toml")).exists(), "{name}.toml not written:\n{said}");
    }
    assert!(said.contains("note: `reservation_id` has no tessera equivalent"), "{said}");
    // Running it again keeps what is there.
    let again = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["layout", "import"])
        .arg(&xml)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"));
    let files: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    let check = Command::new(env!("CARGO_BIN_EXE_tessera")).args(["layout", "check"]).args(&files).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout)
        .contains("`grid` 640x360 @15 fps; 1: 1 cells, 2-4: 4 cells, 5-9: 9 cells"));

    // A server on the imported folder: the FreeSWITCH group is the room's layout.
    let server = Server::start_with_layouts(&["--layout", "grid"], out.clone());
    let a = join(server.client("fs", "a", 0)).await;
    let b = join(server.client("fs", "b", 1)).await;
    let grid = layout(&server, "grid");
    let colours = vec![("a".to_string(), palette(0)), ("b".to_string(), palette(1))];
    eventually(Duration::from_secs(60), "the imported 2x2 holds both", || {
        let s = a.room_state().ok_or("no state")?;
        (s.participants.len() == 2 && s.layout == "grid").then_some(()).ok_or("not yet")?;
        check_tiles(&a, &s, &grid, &colours)
    })
    .await;
    // The 2x2 cell FreeSWITCH puts the first member in: the top-left quarter.
    let frame = a.latest_frame().unwrap();
    let f = frame.frame.as_frame();
    let top_left = tessera::media::convert::mean_rgb(&f, 150, 80, 8, 8);
    assert!(top_left.distance(palette(0)) < 45.0, "top-left quarter is {top_left}");
    a.leave().await;
    b.leave().await;
    std::fs::remove_dir_all(&out).ok();
}
