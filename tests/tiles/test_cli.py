"""``olmap tiles`` and ``olmap serve`` as shared/CLI.md writes them."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from ..conftest import run_olmap as olmap


def test_tiles_as_documented(results_dir, tmp_path):
    res = olmap("tiles", results_dir, "--out", "site/", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    site = tmp_path / "site"
    assert (site / "index.html").is_file()
    assert f"Viewer: {site / 'index.html'}" in " ".join(res.stdout.split())
    assert "olmap serve site" in res.stdout
    for key in ("bse", "prob", "mgnum"):
        assert (site / "tiles" / key / "0" / "0" / "0.png").is_file()
        assert (site / "cog" / f"{key}.tif").is_file()
    # Existing results are kept unless --overwrite; bad input is one line.
    again = olmap("tiles", results_dir, "--out", "site/", cwd=tmp_path)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert "--overwrite" in again.stderr
    bad = olmap("tiles", tmp_path / "nowhere", "--out", "s2", cwd=tmp_path)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "nowhere: result folder not found" in bad.stderr
    conf = tmp_path / "bad.yaml"
    conf.write_text("backend: gdal2tiles\n")
    bad = olmap("tiles", results_dir, "--out", "s3", "--config", conf, cwd=tmp_path)
    assert bad.returncode == 1 and "backend" in bad.stderr and not (tmp_path / "s3").exists()


def test_serve_prints_the_url_and_serves_the_site(served):
    with urllib.request.urlopen(served) as r:
        assert r.status == 200 and b"viewer.js" in r.read()
    with urllib.request.urlopen(served + "data/site.js") as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
    with urllib.request.urlopen(served + "tiles/bse/0/0/0.png") as r:
        assert r.headers["Content-Type"] == "image/png" and r.read()[:4] == b"\x89PNG"
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(served + "tiles/bse/9/0/0.png")


def test_serve_refuses_a_folder_without_a_site(tmp_path):
    res = olmap("serve", tmp_path, "--port", "0", cwd=tmp_path)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "no index.html" in res.stderr
