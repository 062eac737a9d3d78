"""A small VOC-format dataset that is hard in the ways real WSSS is hard.

Every object is a textured body whose appearance is shared by all classes, plus a small
coloured part (its "head") that alone decides the class. A classifier therefore learns the
part, and its CAM covers the part but not the body: the partial-coverage problem WSSS
methods exist to solve. Images hold several objects of one to three classes at varied
scales, on textured, cluttered backgrounds with headless bodies (background) and context
that co-occurs with some classes (water with cobalt, grass with jade).

Generation is a pure function of (seed, split, index), so the same seed writes byte-identical
files and any image can be regenerated on its own.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Foreground classes, in config order after 'background': part colour (RGB) and part shape.
PARTS = {
    "ruby": ((215, 25, 45), "circle"),
    "jade": ((20, 175, 95), "triangle"),
    "amber": ((245, 175, 15), "square"),
    "cobalt": ((35, 75, 225), "diamond"),
    "violet": ((160, 40, 205), "cross"),
}
CONTEXT = {"cobalt": "water", "jade": "grass"}   # scene context that co-occurs with a class
CONTEXT_WITH, CONTEXT_WITHOUT = 0.8, 0.1         # P(context | class present), P(context | absent)
BORDER = 1                                       # erode/dilate radius of the 255 band at object edges


def voc_palette() -> list[int]:
    """The standard VOC colour map (bit-interleaved class index), flattened for PIL."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def _smooth_noise(rng, h, w, cells, channels=1):
    """Value noise: a coarse random grid upsampled with bicubic interpolation."""
    grid = rng.random((cells, cells, channels)).astype(np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels)


def _background(rng, h, w):
    base = rng.uniform(70, 190, size=3)
    tint = rng.uniform(-30, 30, size=3)
    img = base + tint * (_smooth_noise(rng, h, w, 3, 3) - 0.5) * 2
    # oriented grating + fine grain: texture a CAM must learn to ignore
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(5, 14)
    grating = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period)
    img += rng.uniform(6, 18) * grating[..., None]
    img += rng.normal(0, 7, size=(h, w, 1))
    return img


def _muted_colour(rng):
    grey = rng.uniform(50, 210)
    return tuple(float(np.clip(grey + rng.uniform(-35, 35), 0, 255)) for _ in range(3))


def _clutter(rng, img, count):
    h, w = img.shape[:2]
    for _ in range(count):
        colour, kind = _muted_colour(rng), rng.integers(4)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(4, max(6, min(h, w) // 5)))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + s, y + int(s * rng.uniform(0.3, 1.5))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), s // 2, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            end = (x + int(rng.integers(-2 * s, 2 * s)), y + int(rng.integers(-2 * s, 2 * s)))
            cv2.line(img, (x, y), end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            pts = np.array([(x + rng.integers(-s, s), y + rng.integers(-s, s)) for _ in range(3)], np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)


def _context(rng, img, kind):
    h, w = img.shape[:2]
    top = int(h * rng.uniform(0.6, 0.78))
    yy, xx = np.mgrid[top:h, 0:w].astype(np.float32)
    if kind == "water":
        waves = np.sin(xx / rng.uniform(3, 6) + np.sin(yy / 3.0) * 2)
        band = np.stack([40 + 10 * waves, 95 + 20 * waves, 165 + 25 * waves], -1)
    else:  # grass: speckled green blades
        blades = rng.random((h - top, w)) ** 3
        band = np.stack([60 + 30 * blades, 120 + 70 * blades, 45 + 20 * blades], -1)
    img[top:] = band


def _body_texture(rng, h, w):
    """Shared by every class, so the body never tells which class an object is."""
    base = rng.uniform(95, 165) + rng.uniform(-20, 20, size=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(4, 9)
    stripes = np.sign(np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period))
    return base + 22 * stripes[..., None] + 10 * (_smooth_noise(rng, h, w, 6, 1) - 0.5)


def _draw_part(mask, shape, centre, r):
    cx, cy = centre
    if shape == "circle":
        cv2.circle(mask, (cx, cy), r, 1, -1)
    elif shape == "square":
        cv2.rectangle(mask, (cx - r, cy - r), (cx + r, cy + r), 1, -1)
    elif shape == "cross":
        t = max(1, r // 2)
        cv2.rectangle(mask, (cx - r, cy - t), (cx + r, cy + t), 1, -1)
        cv2.rectangle(mask, (cx - t, cy - r), (cx + t, cy + r), 1, -1)
    else:
        if shape == "triangle":
            pts = [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
        else:  # diamond
            pts = [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 1)


def _object_masks(rng, h, w, shape):
    """Body and part masks of one object; shape None draws a headless body (background)."""
    side = min(h, w)
    a = side * rng.uniform(0.25, 0.42)           # semi-major axis: varied scale
    b = a * rng.uniform(0.45, 0.7)
    angle = rng.uniform(0, 360)
    cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
    body = np.zeros((h, w), np.uint8)
    cv2.ellipse(body, (int(cx), int(cy)), (int(a), int(b)), angle, 0, 360, 1, -1)
    part = np.zeros((h, w), np.uint8)
    if shape is not None:
        rad = np.deg2rad(angle)
        # inside the body near one end, as a face is inside a person's outline
        px, py = cx + 0.45 * a * np.cos(rad), cy + 0.45 * a * np.sin(rad)
        _draw_part(part, shape, (int(px), int(py)), max(2, int(b * rng.uniform(0.4, 0.52))))
    return body.astype(bool), part.astype(bool)


def _choose_classes(rng, names):
    k = rng.choice([1, 2, 3], p=[0.6, 0.32, 0.08])
    chosen = list(rng.choice(len(names), size=k, replace=False))
    n_objects = int(rng.integers(k, 3)) if k < 3 else 3
    return chosen + list(rng.choice(chosen, size=n_objects - k))


def render(seed: int, split: str, index: int, classes: list[str], min_size: int, max_size: int):
    """One image: RGB uint8, label map uint8 (255 band at edges), and objects [(class_id, mask)]."""
    split_code = sum(ord(ch) * 31 ** i for i, ch in enumerate(split)) % (2 ** 31)
    rng = np.random.default_rng([seed, split_code, index])
    names = classes[1:]
    h, w = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    objects = [int(c) + 1 for c in _choose_classes(rng, names)]

    img = _background(rng, h, w)
    present = {names[c - 1] for c in objects}
    for cls, ctx in CONTEXT.items():
        if cls in names and rng.random() < (CONTEXT_WITH if cls in present else CONTEXT_WITHOUT):
            _context(rng, img, ctx)
    _clutter(rng, img, int(rng.integers(5, 13)))

    label = np.zeros((h, w), np.uint8)
    edges = np.zeros((h, w), bool)
    drawn = []
    headless = [None] * int(rng.integers(1, 3))  # bodies alone never mean a class
    for cls in headless + objects:
        shape = None if cls is None else PARTS[names[cls - 1]][1]
        for _ in range(20):   # avoid hiding an earlier object (and its part) under a new one
            body, part = _object_masks(rng, h, w, shape)
            whole = body | part
            if all((whole & m).sum() < 0.1 * m.sum() for _, m in drawn):
                break
        img[body] = _body_texture(rng, h, w)[body]
        if cls is not None:
            img[part] = np.array(PARTS[names[cls - 1]][0], np.float32) + rng.normal(0, 8, size=(int(part.sum()), 3))
        label[whole] = 0 if cls is None else cls
        drawn = [(c, m & ~whole) for c, m in drawn] + [(cls, whole)]
        if cls is not None:   # VOC bands object outlines only
            kernel = np.ones((2 * BORDER + 1, 2 * BORDER + 1), np.uint8)
            w8 = whole.astype(np.uint8)
            edges |= cv2.dilate(w8, kernel) != cv2.erode(w8, kernel)
    label[edges] = 255

    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0.6)
    visible = [(c, m) for c, m in drawn if c is not None and m.any()]
    return img, label, visible


def _annotation_xml(image_id, h, w, classes, objects):
    parts = [f"<annotation>\n  <folder>demo</folder>\n  <filename>{image_id}.jpg</filename>\n"
             f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>\n"
             "  <segmented>1</segmented>\n"]
    for cls, mask in objects:
        ys, xs = np.nonzero(mask)
        parts.append(f"  <object>\n    <name>{classes[cls]}</name>\n    <difficult>0</difficult>\n"
                     f"    <bndbox>\n      <xmin>{xs.min() + 1}</xmin>\n      <ymin>{ys.min() + 1}</ymin>\n"
                     f"      <xmax>{xs.max() + 1}</xmax>\n      <ymax>{ys.max() + 1}</ymax>\n    </bndbox>\n  </object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def generate(root: str | Path, classes: list[str], seed: int, n_train: int, n_val: int,
             min_size: int, max_size: int, progress=None) -> None:
    """Write the whole dataset in VOC layout under root (files are overwritten)."""
    unknown = [c for c in classes[1:] if c not in PARTS]
    if unknown:
        raise ValueError(f"demo classes {unknown} unknown; the demo generator draws {list(PARTS)}")
    root = Path(root)
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    jobs = [("train", i) for i in range(n_train)] + [("val", i) for i in range(n_val)]
    ids = {"train": [], "val": []}
    for split, i in (progress(jobs) if progress else jobs):
        image_id = f"{split}_{i:04d}"
        img, label, objects = render(seed, split, i, classes, min_size, max_size)
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=92)
        mask = Image.fromarray(label, mode="P")
        mask.putpalette(palette)
        mask.save(root / "SegmentationClass" / f"{image_id}.png")
        xml = _annotation_xml(image_id, *label.shape, classes, objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        ids[split].append(image_id)
    for split, names in ids.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
