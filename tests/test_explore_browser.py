"""analysis.explore's page in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (no browser download). The page loads without console errors, a clicked patch
colours every image by its cosine similarity as the Python-side array says, the head selector switches
the attention maps, the PNG button downloads the view, a Swin page says it has no attention views.

`make test` installs the browser first (`make browser`: apt-get install chromium chromium-driver); where it
cannot be installed, these tests fail with one line saying so.
"""

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import analysis.attention_work as attention
import analysis.explore_work as explore
from analysis.common import cls_attention, minmax, open_image, patch_features
from analysis.config import ExploreConfig
from tests.helpers.swin import tiny_swin
from tests.test_explore import SIZE, generated_images, tiny_vit

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
MISSING = "the browser test needs Debian's chromium and chromium-driver ({}) and selenium: run `make browser`"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """Headless Chromium whose downloads land in a fresh folder (`driver.downloads`)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(MISSING.format("selenium is not installed"), pytrace=False)
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.fail(MISSING.format(", ".join(missing) + " not found"), pytrace=False)
    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    browser = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    browser.downloads = downloads
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def vit_page(tmp_path_factory):
    """A ViT page (blocks 0 and 1) and what the tools compute on the same pixels."""
    root = tmp_path_factory.mktemp("explore_browser")
    paths = generated_images(root / "images")
    backbone = tiny_vit()
    cfg = ExploreConfig(data_path=str(root / "images"), image_size=SIZE, layers=[0, -1], device="cpu", num_workers=0)
    cfg.output_dir, cfg.progress = str(root / "out"), False
    results = explore.run_explore(backbone, cfg)
    x = torch.cat([attention.preprocess(open_image(p), 8, "square", SIZE) for p in sorted(paths)])
    with torch.inference_mode():
        attn, feats = cls_attention(backbone, x).numpy(), patch_features(backbone, x).numpy()
    return results, attn, feats


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver, path: str) -> None:
    driver.get(Path(path).resolve().as_uri())
    assert driver.execute_script("return typeof window.explore") == "object", console_errors(driver)


def lut_indices(driver, canvas_id: str, table: str, lut: np.ndarray) -> np.ndarray:
    """The canvas's pixels (h, w) as indices into the colour map (every pixel must be one of its colours)."""
    js = "const c = document.getElementById(arguments[0]); return [c.width, c.height, Array.from("
    js += "c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]"
    w, h, flat = driver.execute_script(js, canvas_id)
    px = np.array(flat, dtype=np.int64).reshape(h, w, 4)
    assert (px[..., 3] == 255).all()
    codes = {tuple(c): i for i, c in enumerate(lut.tolist())}
    return np.array([[codes[tuple(p)] for p in row] for row in px[..., :3].tolist()])  # KeyError: not a map colour


def select(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, element_id)).select_by_value(value)


def click_patch(driver, image: int, row: int, col: int, grid: int) -> None:
    """A real mouse click at the centre of patch (row, col) of the image's panel."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    stack = driver.find_elements(By.CSS_SELECTOR, "#grid .stack")[image]
    w, h = stack.size["width"], stack.size["height"]
    dx, dy = (col + 0.5) * w / grid - w / 2, (row + 0.5) * h / grid - h / 2  # offsets from the centre
    ActionChains(driver).move_to_element_with_offset(stack, int(round(dx)), int(round(dy))).click().perform()


def test_page_loads_and_the_head_selector_switches_maps(driver, vit_page):
    results, attn, _ = vit_page
    open_page(driver, results["page"])
    assert console_errors(driver) == []
    viridis = explore.colormap_table("viridis")
    select(driver, "layer", "1")  # the last block: analysis.attention's maps
    maps = {}
    for head in range(3):
        select(driver, "head", str(head))
        maps[head] = lut_indices(driver, "map-2", "viridis", viridis)
        expected = np.round(minmax(attn[2, head]) * 255)  # float16 in the page: one colour step at most
        assert np.abs(maps[head] - expected).max() <= 1, head
    assert not np.array_equal(maps[0], maps[1]) and not np.array_equal(maps[1], maps[2])
    assert driver.find_element("id", "status").text == "[CLS] attention, block 1, head 2 (60% mass outlined)"
    assert console_errors(driver) == []


def test_clicked_patch_colours_every_image_by_its_similarity(driver, vit_page):
    results, _, feats = vit_page
    open_page(driver, results["page"])
    click_patch(driver, image=1, row=5, col=2, grid=8)
    state = driver.execute_script("return window.explore.state")
    assert state["view"] == "similarity" and state["query"] == {"image": 1, "patch": 5 * 8 + 2}
    flat = F.normalize(torch.from_numpy(feats.reshape(-1, feats.shape[-1])), dim=-1).numpy()  # (N, D)
    sims = flat @ flat[64 + 5 * 8 + 2]  # the full float32 cosine, every patch of every image
    lo, hi = sims.min(), sims.max()
    err = results["similarity_precision"]["max_abs_error"]
    tolerance = 255 * 2 * err / (hi - lo) + 1  # the page's measured error on the colour scale, and rounding
    inferno = explore.colormap_table("inferno")
    for i in range(3):
        got = lut_indices(driver, f"map-{i}", "inferno", inferno)
        expected = np.round((sims[i * 64 : (i + 1) * 64] - lo) / (hi - lo) * 255).reshape(8, 8)
        assert np.abs(got - expected).max() <= tolerance, i
        best = state["best"][i]  # the page's best match in image i scores within the error of the true best
        assert sims[i * 64 + best] >= sims[i * 64 : (i + 1) * 64].max() - 2 * err
    kth = np.sort(np.delete(sims, 64 + 5 * 8 + 2))[::-1][len(state["topk"]) - 1]
    assert len(state["topk"]) == 10
    assert all(sims[t["image"] * 64 + t["patch"]] >= kth - 2 * err for t in state["topk"])
    assert len(driver.find_elements("css selector", "#topk .neighbour")) == 10
    assert console_errors(driver) == []


def test_png_button_downloads_the_view(driver, vit_page):
    results, _, _ = vit_page
    open_page(driver, results["page"])
    click_patch(driver, image=0, row=1, col=1, grid=8)
    driver.find_element("id", "download").click()
    target = driver.downloads / "explore_similarity.png"
    deadline = time.monotonic() + 15
    while not target.is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert target.is_file(), list(driver.downloads.iterdir())
    with Image.open(target) as png:
        assert png.format == "PNG" and png.width == 3 * (256 + 8) + 8
        assert np.asarray(png.convert("RGB")).std() > 10  # the images and maps, not a blank canvas
    assert console_errors(driver) == []


def test_swin_page_says_it_has_no_attention_views(driver, tmp_path):
    images = tmp_path / "images"
    generated_images(images)
    cfg = ExploreConfig(data_path=str(images), image_size=96, device="cpu", num_workers=0)
    cfg.output_dir, cfg.progress = str(tmp_path / "out"), False
    results = explore.run_explore(tiny_swin(window_size=4), cfg)
    open_page(driver, results["page"])
    note = driver.find_element("id", "note")
    assert note.is_displayed() and "has no [CLS] self-attention" in note.text
    assert driver.execute_script("return document.querySelector('#view option[value=attention]').disabled")
    pca = explore.read_page(results["page"])["images"][0]["pca"]  # the PCA view shows the stored colours
    js = "return Array.from(document.getElementById('map-0').getContext('2d').getImageData(0, 0, 3, 3).data)"
    np.testing.assert_array_equal(np.array(driver.execute_script(js)).reshape(3, 3, 4)[..., :3], pca)
    click_patch(driver, image=2, row=1, col=1, grid=3)
    assert driver.execute_script("return window.explore.state.query") == {"image": 2, "patch": 4}
    assert console_errors(driver) == []
