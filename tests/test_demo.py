"""``sketchbench demo`` end to end: the command trains (smoke preset, synthetic) and serves; a headless
Chromium draws strokes on the page with pointer events; the photos the page ranks must be exactly what
``sketchbench retrieve`` returns for the same strokes saved as a stroke file, for a dynamic and a
fixed-canvas model (the method switch). The JSON API's bad-input answers are checked without a browser.

The browser part skips when /usr/bin/chromium, /usr/bin/chromedriver or selenium is missing
(``apt-get install chromium chromium-driver``; ``pip install -e '.[demo]'``). Selenium is given the
driver's path, so it never runs Selenium Manager (which would try to download a driver).
Set ``SKETCHBENCH_DEMO_SCREENSHOT=PATH`` to save a screenshot of the page (docs/images/demo.png).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sketchbench.testing import run_cli

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: seconds the demo may take to train (smoke) and start
START_TIMEOUT = 240
#: seconds a client may stall a request before the demo drops it (--request-timeout)
STALL_TIMEOUT = 2


@pytest.fixture(scope="module")
def demo_process(tmp_path_factory):
    """``sketchbench demo --preset smoke`` in a subprocess on a free port (requests time out after 2 s):
    ``{"url", "results", "cache", "proc", "stderr"}`` (the server's stderr file)."""
    root = tmp_path_factory.mktemp("demo")
    cache, results = root / "cache", root / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "SKETCHBENCH_CACHE_DIR": str(cache)}
    err = open(root / "demo.err", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-c", "from sketchbench.cli.main import main; main()", "demo", "--preset", "smoke",
         "--cache-dir", str(cache), "--out", str(results), "--port", "0", "--device", "cpu",
         "--request-timeout", str(STALL_TIMEOUT)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    url = None
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("demo: http://"):
                url = line.split()[1]
        if url is None:
            err.flush()
            pytest.fail(f"the demo did not start: {(root / 'demo.err').read_text()[-2000:]}")
        yield {"url": url, "results": results, "cache": cache, "proc": proc, "stderr": root / "demo.err"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        err.close()


@pytest.fixture(scope="module")
def demo_server(demo_process):
    """(url, results file, cache dir) of the running demo."""
    return demo_process["url"], demo_process["results"], demo_process["cache"]


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url + "api/retrieve", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _retrieve(results: Path, cache: Path, strokes_file: Path, model: dict) -> dict:
    code, out, err = run_cli("retrieve", "-r", str(results), "--cache-dir", str(cache), "-m", model["method"],
                             "-c", str(model["canvas"]), "--top", "10", "--format", "json", str(strokes_file))
    assert code == 0, err
    return json.loads(out)


def test_api_answers_and_refuses(demo_server):
    url, results, cache = demo_server
    with urllib.request.urlopen(url + "api/models", timeout=30) as resp:
        info = json.loads(resp.read())
    methods = [m["method"] for m in info["models"]]
    assert methods[0] == "sketchynet-v2" and info["models"][0]["dynamic"]
    assert {"sketchynet-v1", "triplet-sn"} <= set(methods)
    strokes = [[[20, 30], [120, 200], [300, 60]], [[40, 320], [330, 310]]]
    status, answer = _post(url, json.dumps({"model": 0, "strokes": strokes, "top": 10}).encode())
    assert status == 200, answer
    assert answer["canvas_chosen"] and answer["canvas"] in (32, 64)
    assert answer["gflops"] == pytest.approx(answer["encoder_gflops"] + answer["selector_gflops"])
    assert answer["selector_gflops"] > 0 and answer["render"].startswith("data:image/png;base64,")
    assert len(answer["results"]) == min(10, info["gallery"]["size"])
    with urllib.request.urlopen(url + answer["results"][0]["url"].lstrip("/"), timeout=30) as resp:
        assert resp.headers["Content-Type"] == "image/png" and resp.read()[:4] == b"\x89PNG"
    for body, needle in [(b"not json", "not valid JSON"), (b'{"model": 99, "strokes": [[[1, 2]]]}', "unknown model"),
                         (b'{"model": 0, "strokes": []}', "no points"), (b'{"strokes": "x"}', "list of polylines"),
                         (b'{"strokes": [[[1, 2, 3]]]}', "stroke 0")]:
        status, answer = _post(url, body)
        assert status == 400 and needle in answer["error"], (body, answer)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url + "../../etc/passwd", timeout=30)
    assert exc.value.code == 404


def _browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("the browser test needs /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium (pip install -e '.[demo]')")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sketchbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    # an explicit driver path: Selenium Manager (which downloads drivers) is never run
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    return driver, profile


def _wait(driver, script: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {script} (status: {driver.find_element('id', 'status').text})")


#: a shoe drawn on the 360×360 pad: outline, heel, laces
SHOE = [
    [(50, 250), (310, 250), (318, 228), (255, 200), (205, 160), (180, 105), (115, 100), (108, 150), (60, 190), (50, 250)],
    [(50, 235), (95, 235), (100, 250)],
    [(170, 125), (140, 140), (185, 150), (155, 168), (200, 175)],
]


def _densify(stroke: list[tuple[int, int]], step: int = 12) -> list[tuple[int, int]]:
    """Integer points every ``step`` px along a polyline (a pointer's moves as a hand makes them)."""
    out = [stroke[0]]
    for (xa, ya), (xb, yb) in zip(stroke, stroke[1:]):
        n = max(1, int(max(abs(xb - xa), abs(yb - ya)) // step))
        out += [(round(xa + (xb - xa) * k / n), round(ya + (yb - ya) * k / n)) for k in range(1, n + 1)]
    return out


DONE = "const s = window.sketchbench; return s.shown === s.seq && (s.result || s.error) ? true : false;"


def _shown(driver) -> tuple[dict, list[str]]:
    _wait(driver, DONE)
    state = driver.execute_script("return {result: window.sketchbench.result, error: window.sketchbench.error};")
    assert state["error"] is None, state["error"]
    ids = [li.get_attribute("data-photo") for li in driver.find_elements("css selector", "#grid li")]
    return state["result"], ids


def test_page_ranks_what_retrieve_ranks(demo_server, tmp_path):
    url, results, cache = demo_server
    driver, profile = _browser()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    try:
        driver.get(url)
        _wait(driver, "return window.sketchbench && window.sketchbench.ready === true;")
        pad = driver.find_element("id", "pad")
        # a shoe in three strokes (pad pixels), drawn with pointer events in small steps
        for stroke in SHOE:
            chain = ActionChains(driver, duration=5)
            points = _densify(stroke)
            chain.move_to_element_with_offset(pad, points[0][0] - 180, points[0][1] - 180).click_and_hold()
            for (xa, ya), (xb, yb) in zip(points, points[1:]):
                chain.move_by_offset(xb - xa, yb - ya)
            chain.release().perform()
        strokes = driver.execute_script("return window.sketchbench.strokes;")
        assert len(strokes) == len(SHOE) and all(len(s) >= 3 for s in strokes)
        models = driver.execute_script("return window.sketchbench.models;")
        stroke_file = tmp_path / "strokes.json"
        stroke_file.write_text(json.dumps({"strokes": strokes}))

        checked = []
        for index in (0, next(i for i, m in enumerate(models) if not m["dynamic"])):
            Select(driver.find_element("id", "model")).select_by_index(index)
            driver.find_element("id", "search").click()
            shown, ids = _shown(driver)
            model = models[index]
            assert shown["model"]["id"] == model["id"]
            cli = _retrieve(results, cache, stroke_file, model)
            (q,) = cli["queries"]
            assert ids == [r["photo"] for r in q["results"]], (model["label"], ids, q["results"])
            assert [r["distance"] for r in shown["results"]] == pytest.approx([r["distance"] for r in q["results"]], abs=1e-6)
            assert shown["canvas"] == q["canvas"] and shown["canvas_chosen"] == q["canvas_chosen"] == model["dynamic"]
            assert shown["gflops"] == pytest.approx(q["gflops"])
            page_canvas = driver.find_element("id", "canvas").text
            assert page_canvas == f"{q['canvas']}×{q['canvas']}"
            checked.append(model["method"])
        assert checked[0] == "sketchynet-v2" and len(set(checked)) == 2
        shot = os.environ.get("SKETCHBENCH_DEMO_SCREENSHOT")
        if shot:
            Select(driver.find_element("id", "model")).select_by_index(0)
            _shown(driver)
            time.sleep(0.5)  # let the photos load
            driver.save_screenshot(shot)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# -- the demo under load and bad requests (issue 27, class 6); loopback only -----------------------------
def _raw(url: str, data: bytes, read: bool = True, timeout: float = 30) -> bytes:
    """Send raw bytes to the demo's port and return what comes back (b"" when it closes at once)."""
    import socket

    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


STROKES = [[[20, 30], [120, 200], [300, 60]], [[40, 320], [330, 310]]]


def test_fields_out_of_their_type_or_range_are_a_400_not_a_500(demo_server):
    url = demo_server[0]
    deep = b'{"model": 0, "strokes": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for body, needle in [
        (b'{"model": 0, "top": 1e400, "strokes": [[[1, 2], [3, 4]]]}', "'top' must be an integer"),
        (b'{"model": 1e400, "strokes": [[[1, 2], [3, 4]]]}', "unknown model"),
        (b'{"model": -1, "strokes": [[[1, 2], [3, 4]]]}', "unknown model"),
        (b'{"model": true, "strokes": [[[1, 2], [3, 4]]]}', "unknown model"),
        (b'{"model": "0", "strokes": [[[1, 2], [3, 4]]]}', "unknown model"),
        (b'{"model": 0, "strokes": [[[1e400, 2], [3, 4]]]}', "NaN or infinite"),
        (deep, "nests deeper than"),
    ]:
        status, answer = _post(url, body)
        assert status == 400 and needle in answer["error"], (body[:60], status, answer)


def test_requests_for_another_host_or_from_another_origin_are_refused(demo_server):
    url = demo_server[0]
    port = url.rstrip("/").rsplit(":", 1)[1]
    rebound = _raw(url, f"GET /api/models HTTP/1.1\r\nHost: evil.example:{port}\r\n\r\n".encode())
    assert rebound.startswith(b"HTTP/1.0 403"), rebound[:200]
    assert b'"models"' not in rebound
    body = json.dumps({"model": 0, "strokes": STROKES}).encode()
    cross = _raw(url, (f"POST /api/retrieve HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://evil.example\r\n"
                       f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    assert cross.startswith(b"HTTP/1.0 403"), cross[:200]
    for name in ("localhost", "127.0.0.1"):  # the page's own origin is answered
        ok = _raw(url, f"GET /api/models HTTP/1.1\r\nHost: {name}:{port}\r\n\r\n".encode())
        assert ok.startswith(b"HTTP/1.0 200"), ok[:200]


def test_fifty_concurrent_queries_are_all_answered(demo_server):
    url = demo_server[0]
    body = json.dumps({"model": 0, "strokes": STROKES, "top": 5}).encode()
    n = 60
    start = threading.Barrier(n)
    statuses: list[object] = [None] * n

    def query(i: int) -> None:
        start.wait()
        try:
            statuses[i] = _post(url, body)[0]
        except Exception as exc:  # a reset or a refused connection is a dropped query
            statuses[i] = repr(exc)

    threads = [threading.Thread(target=query, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [200] * n, [s for s in statuses if s != 200][:5]


def test_stalled_and_dropped_clients_hold_no_thread_and_print_no_traceback(demo_process):
    import socket

    url, proc = demo_process["url"], demo_process["proc"]
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    before = _threads(proc.pid)
    head = f"POST /api/retrieve HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n\r\n".encode()
    stalled = []
    for _ in range(30):  # more than the demo's workers: each sends part of its body, then nothing
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(head + b'{"model": 0, "strokes": [')
        stalled.append(sock)
    for _ in range(10):  # dropped clients: half a request, then a reset
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.sendall(head + b"{")
        sock.close()
    time.sleep(0.5)
    assert _threads(proc.pid) <= before + 8 + 2, "the stalled uploads started a thread each"
    t0 = time.monotonic()
    status, answer = _post(url, json.dumps({"model": 0, "strokes": STROKES}).encode())
    assert status == 200, answer  # answered once the stalled uploads time out
    assert time.monotonic() - t0 < 8 * STALL_TIMEOUT
    for sock in stalled:
        assert sock.recv(100) == b"", "a stalled upload was not dropped"
        sock.close()
    # a client that leaves before its answer
    _raw(url, f"GET /api/models HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode(), read=False)
    time.sleep(0.5)
    assert proc.poll() is None
    assert "Traceback" not in demo_process["stderr"].read_text()
