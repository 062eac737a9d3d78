"""IRN's IR labels of one shard from the CAMs, via two label-mode dense CRFs: python -m stages.ir_labels ..."""
from pipeline.affinity.irn import make_ir_labels
from pipeline.affinity.labels import labels_confusion
from pipeline.core.store import ArtifactReader
from stages._args import parse, shard_datasets, shard_parser, write_json
from stages._settings import add_settings
from stages._main import stage_main


@stage_main
def main(argv=None) -> None:
    p = shard_parser(__doc__, "uint8 labels, 255 = ignore", eval_split=True, runtime=False)
    p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
    add_settings(p, "ir_labels")
    p.add_argument("--workers", type=int, default=1, help="processes running the CRF")
    args, cfg = parse(p, argv)

    voc, eval_voc = shard_datasets(args, eval_split=True)
    tally = make_ir_labels(ArtifactReader(args.cams), voc, args.out, cfg, args.workers)
    confusion = labels_confusion(ArtifactReader(args.out), eval_voc)
    write_json(args.tally, {"split": args.split, "eval_split": args.eval_split, "eval_images": len(eval_voc), **tally,
                            "confusion": [["labelled", confusion.tolist()]]})
    print(f"ir_labels: {len(voc)} images of shard {args.shard} -> {args.out}")


if __name__ == "__main__":
    main()
