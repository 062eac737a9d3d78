"""Random-walk propagation of the CAMs over AffinityNet affinities: python -m stages.propagate ..."""
from pipeline.data.voc import VOCDataset
from pipeline.device import resolve_device, set_threads
from pipeline.models.affinity_net import load_affinity_net
from pipeline.propagate import evaluate_maps, propagate
from pipeline.store import ArtifactReader
from stages._args import add_dataset, add_runtime, json_arg, parser, write_json

p = parser(__doc__)
add_dataset(p, split_flags=("--split", "--eval-split"))
add_runtime(p)
p.add_argument("--cams", required=True, help="HDF5 written by extract_cams")
p.add_argument("--affinity", required=True, help="checkpoint written by train_affinity")
p.add_argument("--backbone", default=None, help="expected backbone (config); a mismatch is an error")
p.add_argument("--method", required=True)
p.add_argument("--cfg", required=True, type=json_arg, help="JSON of the random_walk config section")
p.add_argument("--out", required=True, help="HDF5 output (float16 maps, background first)")
p.add_argument("--report", required=True, help="JSON with the pseudo-label mIoU")
args = p.parse_args()

set_threads(args.threads)
voc = VOCDataset(args.root, args.classes, args.split)
voc.check(masks=False)
eval_voc = VOCDataset(args.root, args.classes, args.eval_split)
eval_voc.check(masks=True)
model, meta = load_affinity_net(args.affinity, args.backbone)
timing = propagate(model, meta, ArtifactReader(args.cams), voc, args.out, args.cfg, resolve_device(args.device))
result = evaluate_maps(ArtifactReader(args.out), eval_voc, desc="random-walk mIoU")
write_json(args.report, {"method": args.method, **timing, **result})
print(f"propagate: {args.method} random-walk mIoU {result['miou']:.4f} on {args.eval_split} (fg precision "
      f"{result['fg_precision']:.3f} recall {result['fg_recall']:.3f}) -> {args.out}")
