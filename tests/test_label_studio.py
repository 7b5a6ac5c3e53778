"""A round trip through a real Label Studio server (marker ``integration``): start it on
localhost with a temporary data dir and a legacy API token, upload a round's queries
(``alseg export --to label-studio``), answer every region through the server's REST API
as an annotator who follows the ground truth would, download and import the answers
(``alseg import --from label-studio``), and check that the LabelStore equals the simulated
oracle's; then resume. Optionally a screenshot of a task (headless Chromium).

Label Studio (~1 GB with its dependencies) lives in its own environment:

    python -m venv .venv-ls && .venv-ls/bin/pip install 'label-studio==1.23.*'
    ALSEG_LABEL_STUDIO=.venv-ls/bin/label-studio make test PYTEST_ARGS="-m integration"

Without ``ALSEG_LABEL_STUDIO`` (or ``label-studio`` on PATH) the test is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import requests
from helpers import tiny_overrides
from test_human import _names, _state, _truth

from alseg.cli import main
from alseg.data.labels import LabelStore
from alseg.human.queries import load_queries
from alseg.rundir import RunDir

pytestmark = pytest.mark.integration
TOKEN = "alsegintegrationtoken0123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    exe = os.environ.get("ALSEG_LABEL_STUDIO") or shutil.which("label-studio")
    if not exe:
        pytest.skip("no Label Studio: set ALSEG_LABEL_STUDIO to its label-studio executable")
    data = tmp_path_factory.mktemp("label-studio")
    port = _free_port()
    log = (data / "server.log").open("w")
    proc = subprocess.Popen(
        [
            exe,
            "start",
            "-b",
            "-p",
            str(port),
            "--data-dir",
            str(data / "data"),
            "--username",
            "annotator@example.com",
            "--password",
            "annotator-password",
            "--user-token",
            TOKEN,
            "--enable-legacy-api-token",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data / "data")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None:
                pytest.fail(f"Label Studio exited: {(data / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
        else:
            pytest.fail("Label Studio did not start within 4 minutes")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _annotate(url: str, project: int, answer_fn) -> int:
    """Answer every task of the project through the REST API: the pre-annotated regions
    with one choices result each."""
    h = {"Authorization": f"Token {TOKEN}"}
    tasks = requests.get(
        f"{url}/api/tasks", params={"project": project, "fields": "all"}, headers=h, timeout=30
    ).json()["tasks"]
    for task in tasks:
        regions = requests.get(
            f"{url}/api/predictions", params={"task": task["id"]}, headers=h, timeout=30
        ).json()[0]["result"]
        result = list(regions)
        for reg in regions:
            result.append(
                {
                    "id": reg["id"],
                    "from_name": "class",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": answer_fn(int(reg["id"][1:]))},
                }
            )
        r = requests.post(
            f"{url}/api/tasks/{task['id']}/annotations",
            json={"result": result},
            headers=h,
            timeout=30,
        )
        assert r.status_code == 201, r.text
    return len(tasks)


def test_round_trip_through_label_studio(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    out = tmp_path / "run"
    args = tiny_overrides(
        tmp_path, "labeling=multiclass", "labeling.oracle=human", "active.budget=16"
    )
    assert main(["run", *args, f"run_dir={out}"]) == 0
    assert main(["export", str(out), "--to", "label-studio", "--url", server]) == 0
    project = json.loads((out / "export" / "round_00" / "project.json").read_text())["project"]
    sim, names = _truth(out)
    n = _annotate(server, project, lambda g: _names(sim, names, g))
    assert n == len({q["image"] for q in load_queries(RunDir(out), 0).queries})
    assert main(["import", str(out), "--from", "label-studio"]) == 0
    assert _state(out)["phase"] == "labeled"

    q = load_queries(RunDir(out), 0)
    ids = np.array(sorted(int(x["id"]) for x in q.queries))
    ref = sim.annotate(ids)
    store = LabelStore.from_file(out / "labels" / "round_00.npz", sim.regions.total, len(names))
    assert int((store.round >= 0).sum()) == ids.size
    assert store.cls[ids].tolist() == ref.classes.tolist()
    assert store.cost[ids].tolist() == ref.costs.tolist()
    assert (store.answer_bits(ids)[:, : ref.bits.shape[1]] == ref.bits).all()
    assert main(["resume", str(out)]) == 0  # round 0 trains, round 1's queries wait
    assert _state(out)["round"] == 1 and _state(out)["phase"] == "awaiting_answers"


class _Chromium:
    """Headless Chromium driven over the DevTools protocol (websocket-client)."""

    def __init__(self, exe: str, profile, size=(1400, 1000)) -> None:
        import websocket

        port = _free_port()
        self.proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                tabs = requests.get(f"http://127.0.0.1:{port}/json", timeout=2).json()
                break
            except requests.RequestException:
                time.sleep(0.2)
        page = next(t for t in tabs if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True)
        self.n = 0

    def call(self, method: str, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == self.n:
                return m.get("result", {})

    def text(self) -> str:
        r = self.call("Runtime.evaluate", expression="document.body.innerText")
        return str(r.get("result", {}).get("value", ""))

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)


def test_tasks_render_regions_and_choices(server, tmp_path, monkeypatch):
    """A task in the web page, as the annotator sees it: the question, the outlined
    query region and, once it is selected, the classes to choose from (a screenshot in
    the test's tmp dir, PNG)."""
    import base64

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("no headless Chromium (Debian: apt install chromium)")
    pytest.importorskip("websocket", reason="pip install websocket-client")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    out = tmp_path / "run"
    args = tiny_overrides(tmp_path, "labeling.oracle=human", "data.image_size=64")
    assert main(["run", *args, f"run_dir={out}"]) == 0
    assert main(["export", str(out), "--to", "label-studio", "--url", server]) == 0
    project = json.loads((out / "export" / "round_00" / "project.json").read_text())["project"]
    session = requests.Session()
    session.get(f"{server}/user/login/", timeout=30)
    login = session.post(
        f"{server}/user/login/",
        data={
            "email": "annotator@example.com",
            "password": "annotator-password",
            "csrfmiddlewaretoken": session.cookies.get("csrftoken"),
        },
        headers={"Referer": f"{server}/user/login/"},
        allow_redirects=False,
        timeout=30,
    )
    assert login.status_code == 302 and "sessionid" in session.cookies
    task = requests.get(
        f"{server}/api/tasks",
        params={"project": project},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=30,
    ).json()["tasks"][0]["id"]
    browser = _Chromium(exe, tmp_path / "profile")
    try:
        for c in session.cookies:
            browser.call("Network.setCookie", name=c.name, value=c.value, url=server)
        browser.call("Page.navigate", url=f"{server}/projects/{project}/data?task={task}")
        for _ in range(60):  # the labelling interface loads asynchronously
            if "For each outlined region: its main class" in browser.text():
                break
            time.sleep(1)
        text = browser.text()
        assert "For each outlined region: its main class" in text and "query" in text
        # select the region in the regions list (the last "query" on the page; the first
        # is the polygon tool's label): its classes appear
        box = browser.call(
            "Runtime.evaluate",
            expression=(
                "(() => { const e = [...document.querySelectorAll('*')].filter(n => "
                "n.children.length === 0 && n.textContent.trim() === 'query').pop(); "
                "const r = e.getBoundingClientRect(); "
                "return [r.x + r.width / 2, r.y + r.height / 2]; })()"
            ),
            returnByValue=True,
        )["result"]["value"]
        for kind in ("mousePressed", "mouseReleased"):
            browser.call(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )
        time.sleep(2)
        text = browser.text()
        for name in ("road", "sidewalk", "person", "void"):
            assert name in text
        png = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        (tmp_path / "task.png").write_bytes(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    finally:
        browser.close()
