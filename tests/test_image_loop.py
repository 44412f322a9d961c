"""The image families inside the loop: columns, grids, determinism (gmm on digits: seconds)."""

import numpy as np
from PIL import Image

import collapselab as cl

CFG = {"family": "gmm", "corpus": "digits", "generations": 2, "policies": ["replace"], "train_items": 300,
       "model": {"n_components": 5, "pca_components": 8}}


def test_image_run_writes_metrics_and_grids(tmp_path):
    run = cl.run_experiment(CFG, out=tmp_path / "a")
    m = run.metrics.sort_values("generation")
    for col in ("fid", "precision", "recall", "density", "coverage", "class_entropy", "rare_class_share", "sharpness"):
        assert col in m.columns and np.isfinite(m[col]).all()
    assert run.config.kind == "image"
    assert list(m["generation"]) == [0, 1, 2]
    assert (m["fid"] > 0).all()
    grid = Image.open(tmp_path / "a" / "samples" / "replace" / "seed0" / "gen02.png")
    assert grid.size[0] >= 28 * 10  # 100 images, upscaled
    again = cl.run_experiment(CFG, out=tmp_path / "b")
    np.testing.assert_array_equal(again.metrics.sort_values("generation")["fid"].to_numpy(), m["fid"].to_numpy())


def test_image_family_on_text_corpus_is_a_user_error():
    import pytest

    from collapselab.errors import UserError

    with pytest.raises(UserError, match="not an image source"):
        cl.run_experiment({"family": "vae", "corpus": "sotu"})
