"""Refine one shard's class maps into the final pseudo-labels (PAMR, CRF, saliency): python -m stages.refine ..."""
from pipeline.core.device import set_threads
from pipeline.core.store import ArtifactReader
from pipeline.refine.pseudo_labels import refine
from stages._args import add_dataset, add_shard, json_arg, parser, shard_datasets, write_json

p = parser(__doc__)
add_dataset(p, split_flags=("--split", "--eval-split"))
add_shard(p, "uint8 labels, 255 = ignore")
p.add_argument("--maps", required=True, help="HDF5 of class maps: cams/{method}.h5 or rw/{method}.h5")
p.add_argument("--source", required=True, choices=["rw", "cams"])
p.add_argument("--method", required=True)
p.add_argument("--bg-threshold", type=float, required=True, help="background of CAM maps (seeds.bg_threshold)")
p.add_argument("--cfg", required=True, type=json_arg, help="JSON of the refine config section")
p.add_argument("--workers", type=int, default=1, help="processes refining images")
args = p.parse_args()

set_threads(1)   # one thread per worker process: images run in parallel instead
voc, eval_voc = shard_datasets(args, eval_split=True)
tally = refine(ArtifactReader(args.maps), voc, eval_voc, args.out, args.cfg, args.bg_threshold, args.source,
               args.workers)
write_json(args.tally, {"method": args.method, **tally})
print(f"refine: {args.method} labels of {len(voc)} images of shard {args.shard} -> {args.out}")
