"""The CAM methods by name. Kept free of torch so that the Snakefile, which only needs the names,
builds its DAG without importing it."""
CNN_METHODS = ("cam", "cam_nwc", "gradcam", "gradcampp", "layercam", "fullycam")
VIT_METHODS = ("getam", "attnfusion")   # on the ViT-hybrid classifier
ALL_METHODS = CNN_METHODS + VIT_METHODS
