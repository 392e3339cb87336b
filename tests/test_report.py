"""``dmf report``: a self-contained HTML page of a result or a job, with its
figures inline, looked at in a real headless browser where one is installed."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest

import dmf
from dmf.cli import main
from dmf.jobs import run_job

PNG = b"\x89PNG\r\n\x1a\n"


def inline_images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"',
                                                     page)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    X = rng.random((120, 64)) @ np.diag(np.r_[np.ones(8) * 5, np.ones(56)])
    dmf.nmf(X, 4, max_iter=15, tol=0, seed=0, out=d / "nmf")
    dmf.svd(X, 5, seed=0, out=d / "svd")
    return d


def test_nmf_page_has_loss_components_and_top_columns(results, tmp_path, capsys):
    html_path, png_dir = tmp_path / "nmf.html", tmp_path / "png"
    assert main(["report", str(results / "nmf"), "--html", str(html_path), "--png",
                 str(png_dir), "--image-shape", "8x8", "--top", "3"]) == 0
    page = html_path.read_text()
    images = inline_images(page)
    assert len(images) == 2 and all(i.startswith(PNG) for i in images)
    assert sorted(p.name for p in png_dir.iterdir()) == ["components.png", "loss.png"]
    assert (png_dir / "loss.png").read_bytes() == images[0]
    assert "Top 3 per component" in page and "Parameters" in page
    assert page.count("<tr><td>") >= 4 + 4  # facts and one row per component
    assert "wrote" in capsys.readouterr().out


def test_svd_page_has_the_spectrum_and_default_path(results):
    assert main(["report", str(results / "svd"), "-q"]) == 0
    page = (results / "svd.html").read_text()
    assert "singular values and cumulative explained variance" in page
    assert len(inline_images(page)) >= 2


def test_job_page_has_runs_and_a_section_per_step(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(f"""\
job: r
root: {tmp_path / 'root'}
cluster: {{workers: 0}}
steps:
  - step: generate
    name: X
    shape: 200x16
    rank: 3
    nonnegative: true
  - step: nmf
    x: X
    k: 3
    max_iter: 10
    tol: 0
""")
    run_job(spec, quiet=True)
    run_job(spec, quiet=True)
    assert main(["report", str(tmp_path / "root"), "--html", str(tmp_path / "job.html"),
                 "--image-shape", "4x4"]) == 0
    page = (tmp_path / "job.html").read_text()
    assert page.count("<td>complete</td>") == 2  # two runs
    assert "Step nmf" in page and "Step X" in page
    assert len(inline_images(page)) == 2  # the NMF's objective and components


@pytest.mark.parametrize(("args", "message"), [
    (["nowhere"], "nothing there to report on"),
    (["matrix.zarr"], "not a dmf result or job"),
    (["nmf", "--image-shape", "5x5"], "has 25 pixels; the components have 64 columns"),
])
def test_bad_report_input_exits_2(results, tmp_path, capsys, args, message):
    dmf.save_matrix(np.ones((3, 3)), results / "matrix.zarr", overwrite=True)
    argv = ["report", str(results / args[0]), "--html", str(tmp_path / "x.html"), *args[1:]]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def test_page_renders_in_a_headless_browser(results, tmp_path):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium or Chrome installed (Debian: apt install chromium): the page "
                    "was checked as HTML only")
    html_path = tmp_path / "page.html"
    assert main(["report", str(results / "nmf"), "--html", str(html_path), "-q",
                 "--image-shape", "8x8"]) == 0
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", html_path.as_uri()], capture_output=True,
                         text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the page's own check ran after load: every figure decoded, none broken
    assert 'data-figures="2"' in dom.stdout and 'data-broken="0"' in dom.stdout, dom.stdout[:500]
    shot = tmp_path / "shot.png"
    done = subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1000,1400",
                           html_path.as_uri()], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and shot.read_bytes().startswith(PNG), done.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
