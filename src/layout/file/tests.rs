//! Shipped layouts validate; bad files are rejected with a clear message.

use super::*;
use crate::layout::Layout;

fn layouts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layouts")
}

#[test]
fn every_shipped_layout_loads_and_covers_one_to_sixteen() {
    let (layouts, errors) = load_dir(&layouts_dir());
    assert!(errors.is_empty(), "{errors:?}");
    for name in ["grid", "speaker", "pip", "side-by-side"] {
        let layout = layouts.get(name).unwrap_or_else(|| panic!("{name} missing"));
        for n in 1..=16 {
            let (_, v) = layout.variant_for(n).unwrap();
            assert!((v.min..=v.max).contains(&n), "{name} has no variant for {n}");
        }
        assert!(layout.variant_for(0).is_none());
    }
}

#[test]
fn grid_shapes_follow_the_participant_count() {
    let grid = Layout::load(layouts_dir().join("grid.toml")).unwrap();
    for (n, cells, first) in [
        (1, 1, (1280, 720)),
        (2, 2, (640, 720)),
        (4, 4, (640, 360)),
        (6, 6, (426, 360)),
        (9, 9, (426, 240)),
        (12, 12, (320, 240)),
        (16, 16, (320, 180)),
        (3, 3, (640, 360)),
    ] {
        let (_, v) = grid.variant_for(n).unwrap();
        assert_eq!(v.cells.len(), cells, "{n} participants");
        let r = v.cells[0].rect(1280, 720);
        assert_eq!((r.w, r.h), first, "{n} participants");
    }
    // The short last row of 3 is centred.
    let (_, v) = grid.variant_for(3).unwrap();
    assert_eq!(v.cells[2].rect(1280, 720).x, 320);
}

fn err(text: &str) -> String {
    Layout::parse(text, "layouts/bad.toml").unwrap_err().to_string()
}

const HEAD: &str = "[canvas]\nwidth = 640\nheight = 360\n";

#[test]
fn bad_files_are_rejected_with_file_variant_cell_and_problem() {
    let cases: &[(&str, &[&str])] = &[
        ("[canvas\nwidth = 1", &["layouts/bad.toml", "line 1"]),
        (
            "[[variant]]\nparticipants = 1\n[[variant.cell]]\nx = 0.5\ny = 0\nw = 0.75\nh = 1\n",
            &["variant 1", "cell 1", "x + w = 1.25", "outside the canvas"],
        ),
        (
            "[[variant]]\nparticipants = 1\n[[variant.cell]]\nx = 0\ny = 0\nw = 0\nh = 1\n",
            &["cell 1", "must be positive"],
        ),
        (
            "[[variant]]\nparticipants = 1\n[[variant.cell]]\nx = 0\ny = 0\nw = 1\nh = -0.5\n",
            &["cell 1", "must be positive"],
        ),
        (
            "[[variant]]\nparticipants = 1\n[[variant.cell]]\nx = -0.1\ny = 0\nw = 0.5\nh = 1\n",
            &["cell 1", "outside the canvas"],
        ),
        (
            "[[variant]]\nparticipants = 1\ngrid = { columns = 1, rows = 1 }\n[[variant]]\nparticipants = \"3-4\"\ngrid = { columns = 2, rows = 2 }\n",
            &["no variant for 2 participants"],
        ),
        (
            "[[variant]]\nparticipants = \"2-3\"\ngrid = { columns = 2, rows = 2 }\n",
            &["no variant for 1 participant"],
        ),
        (
            "[[variant]]\nparticipants = 1\n[[variant.cell]]\nx = 0\ny = 0\nw = 1\nh = 1\nrole = \"boss\"\n",
            &["line 11", "unknown variant `boss`"],
        ),
        (
            "[[variant]]\nparticipants = \"1-2\"\ngrid = { columns = 2, rows = 1 }\n[[variant]]\nparticipants = 2\ngrid = { columns = 2, rows = 1 }\n",
            &["variant 2", "overlaps"],
        ),
        (
            "[[variant]]\nparticipants = 1\ngrid = { columns = 1, rows = 1 }\n[[variant.cell]]\nx = 0\ny = 0\nw = 1\nh = 1\nrole = \"speaker\"\n[[variant.cell]]\nx = 0\ny = 0\nw = 1\nh = 1\nrole = \"speaker\"\n",
            &["variant 1", "more than one `speaker` cell"],
        ),
        ("[[variant]]\nparticipants = 1\n", &["variant 1", "no cells"]),
        ("", &["no [[variant]]"]),
        (
            "[[variant]]\nparticipants = \"two\"\ngrid = { columns = 1, rows = 1 }\n",
            &["variant 1", "\"two\" must be a count"],
        ),
        (
            "[[variant]]\nparticipants = 1\ngrid = { columns = 1, rows = 1 }\ncolour = 3\n",
            &["unknown field `colour`"],
        ),
        (
            "[[variant]]\nparticipants = 1\n[[variant.cell]]\nx = nan\ny = 0\nw = 1\nh = 1\n",
            &["cell 1", "not a number"],
        ),
        (
            "[[variant]]\nparticipants = 1\n[[variant.cell]]\nx = 0\ny = 0\nw = 0.001\nh = 1\n",
            &["cell 1", "0x360 pixels"],
        ),
        (
            "[[variant]]\nparticipants = 1\ngrid = { columns = 0, rows = 1 }\n",
            &["variant 1", "between 1 and 16"],
        ),
    ];
    for (body, needles) in cases {
        let text = if body.starts_with("[canvas") { body.to_string() } else { format!("{HEAD}{body}") };
        let message = err(&text);
        assert!(message.starts_with("layouts/bad.toml"), "{message}");
        for needle in *needles {
            assert!(message.contains(needle), "`{message}` lacks `{needle}`");
        }
    }
}

#[test]
fn canvas_and_style_values_are_checked() {
    for (canvas, needle) in [
        ("width = 641\nheight = 360", "canvas width 641"),
        ("width = 640\nheight = 0", "canvas height 0"),
        ("width = 640\nheight = 360\nfps = 0", "fps 0"),
        ("width = 640\nheight = 360\nbackground = \"red\"", "`red` is not a colour"),
    ] {
        let text = format!("[canvas]\n{canvas}\n[[variant]]\nparticipants = 1\ngrid = {{ columns = 1, rows = 1 }}\n");
        let message = err(&text);
        assert!(message.contains(needle), "`{message}` lacks `{needle}`");
    }
    let text = format!("{HEAD}[style]\nborder = {{ width = 100 }}\n[[variant]]\nparticipants = 1\ngrid = {{ columns = 1, rows = 1 }}\n");
    assert!(err(&text).contains("border width 100"));
    let text = format!("{HEAD}[style]\nplaceholder = {{ image = \"missing.png\" }}\n[[variant]]\nparticipants = 1\ngrid = {{ columns = 1, rows = 1 }}\n");
    assert!(err(&text).contains("missing.png"));
}

#[test]
fn a_bad_file_in_a_folder_does_not_stop_the_others() {
    let dir = std::env::temp_dir().join(format!("tessera-layouts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("good.toml"),
        format!("{HEAD}[[variant]]\nparticipants = 1\ngrid = {{ columns = 1, rows = 1 }}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("broken.toml"), "[canvas]\nwidth = ").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a layout").unwrap();
    let (layouts, errors) = load_dir(&dir);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(layouts.keys().collect::<Vec<_>>(), vec!["good"]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("broken.toml"));
}

#[test]
fn placeholder_images_load_relative_to_the_file() {
    let dir = std::env::temp_dir().join(format!("tessera-ph-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let img = image::RgbImage::from_pixel(20, 10, image::Rgb([0, 0, 255]));
    img.save(dir.join("ph.png")).unwrap();
    let text = format!("{HEAD}[style]\nplaceholder = {{ image = \"ph.png\" }}\n[[variant]]\nparticipants = 1\ngrid = {{ columns = 1, rows = 1 }}\n");
    let layout = Layout::parse(&text, dir.join("x.toml")).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let image = layout.placeholder.image.unwrap();
    assert_eq!((image.width(), image.height()), (20, 10));
    let blue = crate::media::color::Rgb::new(0, 0, 255);
    assert!(image.as_frame().yuv_at(10, 5).to_rgb().distance(blue) < 6.0);
}
