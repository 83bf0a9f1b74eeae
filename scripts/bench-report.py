#!/usr/bin/env python3
"""Prints BENCHMARKS.md tables from criterion's results in target/criterion.

Run the benches first: `cargo bench --bench compositor --bench mixer --bench codecs`.
Every figure is criterion's median for that benchmark in that run; a ratio
is only ever taken between figures of the same run (results older than the
newest of their table by more than an hour are left out, shown as "stale").
"""
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
SAME_RUN = 3600  # seconds


def estimates(group, function, *param):
    # criterion turns the "/" inside an id into "_" for its folder names.
    f = ROOT.joinpath(group, function, "_".join(param), "new", "estimates.json")
    if not param:
        f = ROOT.joinpath(group, function, "new", "estimates.json")
    return f if f.exists() else None


def median_ns(group, function, *param):
    f = estimates(group, function, *param)
    if f is None:
        return None
    return json.loads(f.read_text())["median"]["point_estimate"]


def same_run(*files):
    """Whether every result was written within an hour of the newest."""
    times = [f.stat().st_mtime for f in files if f is not None]
    return bool(times) and max(times) - min(times) < SAME_RUN


def median_same_run(anchor, group, function, *param):
    """A median, but only if it came from the same run as `anchor`."""
    f = estimates(group, function, *param)
    if f is None or anchor is None or not same_run(f, anchor):
        return None
    return json.loads(f.read_text())["median"]["point_estimate"]


def fmt(ns):
    if ns is None:
        return "n/a"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def paths(canvas, inp, tiles):
    cw, ch = map(int, canvas.split("x"))
    iw, ih = map(int, inp.split("x"))
    side = {1: 1, 4: 2, 9: 3, 16: 4}[tiles]
    tw, th = cw // side, ch // side
    if (tw, th) == (iw, ih):
        return "copy"
    # `cover` crops the source to the tile's shape, so a 426x240 tile of a
    # 1280x720 picture reads 1278x720: exactly 3:1.
    for k in [2, 3, 4, 6, 8]:
        if (ih == k * th and 0 <= iw - k * tw < k) or (iw == k * tw and 0 <= ih - k * th < k):
            return f"down{k}"
    if iw >= tw and ih >= th:
        return "area"
    return "bilinear (upscale)"


def compositor():
    print("| canvas | inputs | tiles | path | render | floor (copy) | render / floor | unchanged inputs | libyuv bilinear | libyuv box |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for canvas in ["1280x720", "640x360"]:
        for inp in ["1280x720", "640x360"]:
            for tiles in [1, 4, 9, 16]:
                key = f"{tiles}"
                anchor = estimates("compositor", "render", canvas, f"from{inp}", key)
                r = median_ns("compositor", "render", canvas, f"from{inp}", key)
                fl = median_same_run(anchor, "compositor", "floor", canvas, f"from{inp}", key)
                ca = median_same_run(anchor, "compositor", "cached", canvas, f"from{inp}", key)
                ratio = f"{r / fl:.1f}x" if r and fl else "n/a"
                yuv = []
                for name in ["libyuv-bilinear", "libyuv-box"]:
                    y = median_same_run(anchor, "compositor", name, canvas, f"from{inp}", key)
                    yuv.append(f"{fmt(y)} (ours {r / y:.2f}x)" if y and r else "n/a")
                print(f"| {canvas} | {tiles} x {inp} | {tiles} | {paths(canvas, inp, tiles)} | {fmt(r)} | {fmt(fl)} | {ratio} | {fmt(ca)} | {yuv[0]} | {yuv[1]} |")


def paired():
    f = ROOT / "compositor-paired.json"
    if not f.exists():
        print("(no paired run: cargo bench --bench compositor -- paired)")
        return
    data = json.loads(f.read_text())
    print("| canvas | inputs | path | ours | floor | libyuv bilinear | libyuv box | ours / bilinear | ours / box |")
    print("|---|---|---|---|---|---|---|---|---|")
    for canvas in ["1280x720", "640x360"]:
        for inp in ["1280x720", "640x360"]:
            for tiles in [1, 4, 9, 16]:
                d = data.get(f"{canvas}/{inp}/{tiles}")
                if not d:
                    continue
                o, fl, b, x = d["ours_ns"], d["floor_ns"], d["libyuv_bilinear_ns"], d["libyuv_box_ns"]
                print(f"| {canvas} | {tiles} x {inp} | {paths(canvas, inp, tiles)} | {fmt(o)} | {fmt(fl)} | {fmt(b)} | {fmt(x)} | {o / b:.2f} | {o / x:.2f} |")


def upscale():
    print("| one plane | separable bilinear | fast_image_resize bilinear | speed-up |")
    print("|---|---|---|---|")
    for case in ["640x360-to-1280x720", "640x360-to-960x540", "320x180-to-1280x720"]:
        ours = median_ns("upscale", "separable", case)
        fir = median_ns("upscale", "fir", case)
        ratio = f"{fir / ours:.1f}x" if ours and fir else "n/a"
        print(f"| {case.replace('-to-', ' to ')} | {fmt(ours)} | {fmt(fir)} | {ratio} |")


def mixer():
    print("| participants | per 20 ms tick | per participant | share of the 20 ms budget |")
    print("|---|---|---|---|")
    for n in [2, 8, 32, 64]:
        t = median_ns("mixer", "tick", str(n))
        if t is None:
            continue
        print(f"| {n} | {fmt(t)} | {fmt(t / n)} | {t / 20e6 * 100:.2f}% |")


def codecs():
    coded = {}
    f = ROOT / "h264-content.json"
    if f.exists():
        coded = json.loads(f.read_text())
    print("| work | content | median | coded to (target) |")
    print("|---|---|---|---|")
    for content in ["scene", "pattern"]:
        for kind in ["encode", "decode"]:
            for size in ["1280x720", "640x360", "320x180"]:
                m = median_ns("h264", kind, content, size)
                if m is None:
                    continue
                c = coded.get(f"{content}/{size}")
                rate = f"{c['kbps']:.0f} kbps ({c['target_kbps']} kbps)" if c and kind == "decode" else ""
                print(f"| H.264 {kind} {size} (per frame) | {content} | {fmt(m)} | {rate} |")
    print(f"| Opus encode (20 ms, mono) | tone | {fmt(median_ns('opus', 'encode_20ms'))} | |")
    print(f"| Opus decode (20 ms) | tone | {fmt(median_ns('opus', 'decode_20ms'))} | |")


if __name__ == "__main__":
    what = sys.argv[1:] or ["compositor", "paired", "upscale", "mixer", "codecs"]
    for w in what:
        print(f"### {w}\n")
        globals()[w]()
        print()
