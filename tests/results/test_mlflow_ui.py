"""The MLflow UI as a person sees it: a real headless browser (Debian's `chromium`, driven by
Selenium through `chromedriver`) on a real `mlflow server` after a real search.

It checks the rendered pages, not the database: the experiment's runs page lists the search's
parent run; expanding it shows every trial's child run; a child run's page shows its searched
parameters and draws its metric chart; the parent's artifacts list `pareto.png` and the preview
shows the image. Screenshots of each page go to the test's temp folder.

Needs `chromium` and `chromedriver` on PATH (`.ci/run` installs Debian's `chromium` and
`chromium-driver`); without them it is skipped, unless REMEDIES_REQUIRE_BROWSER=1 (set by CI),
where it fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from remedies.results.report import load_study
from remedies.search.driver import SearchOptions, run_search
from remedies.search.space import parse_space
from remedies.stores import tracking

N = 3
EXPERIMENT = "ui-view"
SPACE = {
    "name": "ui",
    "base": {
        "data": {"factory": "tests.factories:blobs", "kwargs": {"n_train": 240}},
        "model": {"factory": "tests.factories:tiny_net"},
        "train": {"epochs": 3, "batch_size": 60, "checkpoint": False},
        "measure": {"keskar": {"eps": [1e-3], "iters": 2}},
    },
    "params": {"train.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
    "remedies": {"sam": {}, "augment": {}},
    "sampler": {"name": "random", "seed": 0},
    "asha": {"enabled": False},
    "baselines": {"enabled": False},  # the subject is what the UI shows of the trials
    "num_samples": N,
    "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0},
}
WAIT_S = 90  # the UI is a single-page app: every check waits for the render, up to this long


def browser():
    """Headless Chromium from the system packages (never a driver Selenium downloads)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        msg = "chromium and chromedriver not on PATH (apt-get install chromium chromium-driver)"
        if os.environ.get("REMEDIES_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1600,1000",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=opts)


@pytest.mark.slow
def test_mlflow_ui_shows_the_search(ray_local, mlflow_server, tmp_path, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.chdir(tmp_path)
    opts = SearchOptions(
        name="ui-1",
        tracking_uri=mlflow_server,
        experiment=EXPERIMENT,
        storage=str(tmp_path / "studies.db"),
        results_dir=str(tmp_path / "ray"),
        quiet=True,
    )
    assert run_search(parse_space(SPACE), opts).exit_code == 0
    study = load_study("ui-1", str(tmp_path / "studies.db"))
    parent = study.user_attrs["mlflow_parent_run_id"]
    exp = study.user_attrs["mlflow_experiment_id"]
    kids = [k.info.run_id for k in tracking.child_runs(mlflow_server, EXPERIMENT, parent)]
    assert len(kids) == N
    arts = {a.path for a in tracking.client(mlflow_server).list_artifacts(parent)}
    assert {
        "pareto.png",
        "accuracy_vs_sharpness.png",
        "learning_curves.png",
        "remedies_on_front.png",
    } <= arts

    shots = tmp_path / "screenshots"
    shots.mkdir()
    drv = browser()
    wait = WebDriverWait(drv, WAIT_S)

    def shot(name: str) -> Path:
        path = shots / f"{name}.png"
        drv.save_screenshot(str(path))
        return path

    def run_link(run_id: str):
        return (By.CSS_SELECTOR, f'a[href$="/runs/{run_id}"]')

    try:
        # 1. the experiment's runs: the parent, named after the search, its trials folded in
        drv.get(f"{mlflow_server}/#/experiments/{exp}/runs")
        link = wait.until(ec.visibility_of_element_located(run_link(parent)))
        assert link.text == "ui-1"
        assert not any(drv.find_elements(*run_link(k)) for k in kids)  # folded
        shot("1_experiment")

        # 2. expanding the parent shows every child run
        link.find_element(By.XPATH, "./ancestor::div[@role='gridcell'][1]//button").click()
        wait.until(lambda d: all(d.find_elements(*run_link(k)) for k in kids))
        names = {drv.find_element(*run_link(k)).text for k in kids}
        assert len(names) == N and all(names), names
        shot("2_expanded")

        # 3. a child run's page: its searched parameter and value, its parent named
        child = kids[0]
        lr = tracking.client(mlflow_server).get_run(child).data.params["train.lr"]
        drv.get(f"{mlflow_server}/#/experiments/{exp}/runs/{child}")
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "train.lr"))
        body = drv.find_element(By.TAG_NAME, "body").text
        assert lr in body and "Parent run" in body and "ui-1" in body
        shot("3_child_run")

        # ... and its val_accuracy chart, found through the chart search and drawn (Plotly's SVG
        # with a plotted trace, one point per epoch)
        drv.get(f"{mlflow_server}/#/experiments/{exp}/runs/{child}/model-metrics")
        search = wait.until(
            ec.element_to_be_clickable(
                (By.CSS_SELECTOR, 'input[placeholder="Search metric charts"]')
            )
        )
        search.send_keys("val_accuracy")
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "val_accuracy"))
        traces = wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .trace")
        )
        # val_accuracy: a point per epoch (the search also matches final_val_accuracy: one point)
        per_trace = sorted(len(t.find_elements(By.CSS_SELECTOR, ".points path")) for t in traces)
        assert SPACE["base"]["train"]["epochs"] in per_trace, per_trace
        shot("4_child_metrics")

        # 4. the parent's artifacts: pareto.png listed, and its preview is a rendered image
        drv.get(f"{mlflow_server}/#/experiments/{exp}/runs/{parent}/artifacts")
        node = wait.until(
            ec.element_to_be_clickable(
                (By.CSS_SELECTOR, '[data-testid="artifact-tree-node"][artifact-name="pareto.png"]')
            )
        )
        node.click()
        img = wait.until(
            lambda d: next(
                (
                    i
                    for i in d.find_elements(By.CSS_SELECTOR, 'img[alt="pareto.png"]')
                    if i.get_property("naturalWidth")
                ),
                None,
            )
        )
        assert img.get_property("naturalWidth") == 600  # FIGSIZE 6 in × 100 dpi
        shot("5_pareto")
    finally:
        drv.quit()
    assert len(list(shots.glob("*.png"))) == 5
