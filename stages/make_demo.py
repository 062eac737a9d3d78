"""Generate the demo dataset in VOC layout: python -m stages.make_demo --out DIR ..."""
import json

from tqdm import tqdm

from pipeline.data import demo
from stages._args import json_arg, parser

p = parser(__doc__)
p.add_argument("--out", required=True, help="dataset root to write")
p.add_argument("--classes", required=True, type=json.loads)
p.add_argument("--generator", required=True, type=json_arg, help="JSON: seed, n_train, n_val, min_size, max_size")
args = p.parse_args()
demo.generate(args.out, args.classes, progress=lambda jobs: tqdm(jobs, desc="demo images"), **args.generator)
print(f"make_demo: {args.generator['n_train']} train + {args.generator['n_val']} val images in {args.out}")
