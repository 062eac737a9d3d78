"""The report's building blocks (the whole page is opened in a browser in test_workflow)."""
import base64
import io
import re

import numpy as np
from PIL import Image

from pipeline.evaluation.report import colour_labels, line_chart, png_data_uri


def test_labels_take_the_voc_palette():
    label = np.array([[0, 1, 2], [15, 20, 255]], np.uint8)
    rgb = colour_labels(label)
    # VOC: background black, aeroplane (128,0,0), bicycle (0,128,0), person (192,128,128),
    # tvmonitor (0,64,128), the 255 border (224,224,192)
    assert rgb[0].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    assert rgb[1].tolist() == [[192, 128, 128], [0, 64, 128], [224, 224, 192]]


def test_embedded_png_decodes_to_the_same_pixels():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    uri = png_data_uri(rgb)
    assert uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as img:
        assert np.array_equal(np.asarray(img), rgb)


def test_line_chart_puts_the_extremes_on_the_plot_corners():
    svg = line_chart({"a": [(1, 0.0), (3, 2.0)], "b": [(2, 1.0)]}, "x", "y", width=300, height=200)
    # plot area: left 50, right 300 - 130 = 170, top 10, bottom 200 - 35 = 165
    coords = re.findall(r'<polyline points="([^"]+)"', svg)
    assert coords[0] == "50.0,165.0 170.0,10.0" and coords[1] == "110.0,87.5"
    assert ">a</text>" in svg and ">b</text>" in svg
