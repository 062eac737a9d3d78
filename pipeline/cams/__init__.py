"""Stage family `extract_cams`, `evaluate_seeds`, `evaluate_boxes`: CAM methods (CNN and ViT),
multi-scale extraction, seeds, WSOL boxes, CAMs on a folder of images."""
