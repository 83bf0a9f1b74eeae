#!/usr/bin/env python3
"""Prints BENCHMARKS.md tables from criterion's results in target/criterion.

Run the benches first: `cargo bench --bench compositor --bench mixer --bench codecs`.
Every figure is criterion's median for that benchmark in that run.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"

# libyuv I420Scale on this machine, NxN 1280x720 inputs into a 1280x720 canvas (from the issue).
LIBYUV_MS = {4: (0.43, "bilinear"), 9: (3.0, "bilinear"), 16: (3.3, "box")}


def median_ns(group, function, *param):
    # criterion turns the "/" inside an id into "_" for its folder names.
    f = ROOT.joinpath(group, function, "_".join(param), "new", "estimates.json")
    if not param:
        f = ROOT.joinpath(group, function, "new", "estimates.json")
    if not f.exists():
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
    if (iw, ih) == (2 * tw, 2 * th):
        return "down2"
    if (iw, ih) == (4 * tw, 4 * th):
        return "down4"
    if iw >= tw and ih >= th:
        return "area"
    return "bilinear (upscale)"


def compositor():
    print("| canvas | inputs | tiles | path | render | floor (copy) | render / floor | unchanged inputs | libyuv I420Scale |")
    print("|---|---|---|---|---|---|---|---|---|")
    for canvas in ["1280x720", "640x360"]:
        for inp in ["1280x720", "640x360"]:
            for tiles in [1, 4, 9, 16]:
                key = f"{tiles}"
                r = median_ns("compositor", "render", canvas, f"from{inp}", key)
                fl = median_ns("compositor", "floor", canvas, f"from{inp}", key)
                ca = median_ns("compositor", "cached", canvas, f"from{inp}", key)
                ratio = f"{r / fl:.1f}x" if r and fl else "n/a"
                bar = ""
                if canvas == "1280x720" and inp == "1280x720" and tiles in LIBYUV_MS:
                    ms, filt = LIBYUV_MS[tiles]
                    bar = f"{ms} ms ({filt}); ours {ms * 1e6 / r:.1f}x faster" if r else f"{ms} ms"
                print(f"| {canvas} | {tiles} x {inp} | {tiles} | {paths(canvas, inp, tiles)} | {fmt(r)} | {fmt(fl)} | {ratio} | {fmt(ca)} | {bar} |")


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
    print("| work | median |")
    print("|---|---|")
    for kind in ["encode", "decode"]:
        for size in ["1280x720", "640x360"]:
            print(f"| H.264 {kind} {size} (per frame) | {fmt(median_ns('h264', kind, size))} |")
    print(f"| Opus encode (20 ms, mono) | {fmt(median_ns('opus', 'encode_20ms'))} |")
    print(f"| Opus decode (20 ms) | {fmt(median_ns('opus', 'decode_20ms'))} |")


if __name__ == "__main__":
    what = sys.argv[1:] or ["compositor", "upscale", "mixer", "codecs"]
    for w in what:
        print(f"### {w}\n")
        globals()[w]()
        print()
