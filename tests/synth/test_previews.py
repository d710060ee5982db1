import numpy as np
from PIL import Image

from olmap.synth.previews import eds_composite, write_section_previews


def test_previews_of_a_section(tmp_path, section_dir):
    written = write_section_previews(section_dir, tmp_path, max_side=300, zoom=200)
    assert [p.name for p in written] == ["bse.png", "eds_rgb.png", "truth.png", "zoom.png"]
    for p in written:
        img = np.asarray(Image.open(p))
        assert img.ndim == 3 and min(img.shape[:2]) > 100
        assert img[..., :3].std() > 10  # not blank


def test_eds_composite_puts_mg_in_red():
    eds = np.zeros((5, 4, 4), np.uint16)
    eds[0, :2] = 80  # Mg in the top half only
    eds[1] = 5
    rgb = eds_composite(eds, ("Mg", "Ca", "Al", "Fe", "Si"))
    assert rgb.shape == (4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[0, 0, 0] > rgb[3, 3, 0]
