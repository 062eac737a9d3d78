"""Where the CAMs put their weight on the demo's objects (docs/diagnostics.md): the class map on the
part, on the body by distance from the part, on the background around the object, and on each
body by whose it is (own class, twin, other class), with the scenes regenerated from the
generator's settings: python -m stages.diagnostics.demo_anatomy ..."""

from pipeline.core.store import ArtifactReader
from pipeline.data import demo
from pipeline.diagnostics import demo_anatomy
from stages._args import add_demo_generator, parser, write_json
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--cams", required=True, help="CAM artifact of the demo (results/demo/cams/cam.h5)")
    add_demo_generator(p)
    p.add_argument("--split", default="train")
    p.add_argument("--images", type=int, default=128, help="the first N images of the split")
    p.add_argument("--threshold", type=float, default=0.15, help="seeds' background threshold")
    p.add_argument("--out", required=True, help="JSON output")
    args = p.parse_args(argv)

    g, cams = args.generator, ArtifactReader(args.cams)
    collar = {k: g[k] for k in ("collar_tint", "collar_reach") if k in g}
    scenes = ((demo.demo_image_id(args.split, i), demo.render(g["seed"], args.split, i, args.classes, g["min_size"],
                                                     g["max_size"], **collar)) for i in range(args.images))
    result = demo_anatomy.anatomy(scenes, lambda key: (cams[key], cams.attrs(key)["classes"]), args.classes,
                                  args.threshold)
    write_json(args.out, result)
    print(f"demo_anatomy: {result['objects']} objects; part {result['part_mean']:.3f}, body at or above "
          f"{args.threshold}: {result['body_at_or_above_threshold']:.3f}, background ring "
          f"{result['background_ring_mean']:.3f}")
    print("body by distance from the part: " + " ".join(f"{b['from_px']}-{b['to_px']} px {b['mean']:.2f}"
                                                       for b in result["body_by_distance"]))
    print("class map on bodies: " + " ".join(f"{kind} {v['mean']:.3f} ({v['bodies']})" for kind, v in
                                             result["class_map_on_bodies"].items() if v["mean"] is not None))


if __name__ == "__main__":
    main()
