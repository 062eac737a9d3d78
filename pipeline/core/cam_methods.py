"""The CAM methods: the one table of their names, from which the extraction's dispatch
(pipeline/cams), the config schema's enum (pipeline/core/config.py), the stages' choices and the
Snakefile's `method` wildcard all derive; tests/test_cams.py keeps the dispatch in step with it.
Kept free of torch so that the Snakefile, which only needs the names, builds its DAG without it.

Each method reads one classifier checkpoint, results/{dataset}/{net}.pt: the CNN
(`classifier`), the CNN after ReCAM's extra training step (`classifier_recam`, rule train_recam,
config section `recam`), the ViT with one class token (`classifier_vit`, config section
`vit_classifier`) or the ViT with one class token per class (`classifier_mct`, config section
`mct_classifier`).
"""
CNN, RECAM, VIT, MCT = "classifier", "classifier_recam", "classifier_vit", "classifier_mct"
CNN_NETS = (CNN, RECAM)   # the CNN's checkpoints: their maps come from pipeline/cams/extract.py

CAM_METHODS = {
    "cam": CNN,          # relu(W_c . F)
    "cam_nwc": CNN,      # the same with negative classifier weights clamped to 0
    "gradcam": CNN,
    "gradcampp": CNN,
    "layercam": CNN,
    "fullycam": CNN,     # LayerCAMs of cams.fullycam_levels fused with the CAM layer
    "recam": RECAM,      # relu((W_new * W_c) . F), W_new the bias-free classifier of ReCAM's step
    "getam": VIT,
    "attnfusion": VIT,   # MCTformer-V2's arithmetic on the one shared class token (ablation)
    "mctformer": MCT,    # MCTformer-V2: class-token attention x coarse CAM, patch-attention refined
    "weaktr": MCT,       # WeakTr: the fine CAM of the adaptive attention fusion
}

ALL_METHODS = tuple(CAM_METHODS)
CNN_METHODS = tuple(m for m, net in CAM_METHODS.items() if net in CNN_NETS)
VIT_METHODS = tuple(m for m, net in CAM_METHODS.items() if net not in CNN_NETS)   # either ViT


def classifier_of(method: str) -> str:
    """The checkpoint name (without .pt) of the classifier a method reads."""
    return CAM_METHODS[method]
