"""A real ComfyUI for the tests: where to find one, and a server on a loopback port running the pack.

ComfyUI is found at ``COMFYUI_PATH`` if set, else the ComfyUI this pack is installed in (the pack at
``ComfyUI/custom_nodes/<name>``), else ``../shared/comfyui`` beside the checkout. It is started as
``python main.py --cpu`` in a subprocess with every writable folder under a temporary base directory
(``--base-directory``; the ComfyUI tree itself may be read-only) and this checkout linked in as
``custom_nodes/comfyui-hspace``, so ComfyUI's own loader imports the pack, its own executor runs the
prompts and its own progress hook, interruption and memory manager are the ones exercised.

Why a server rather than ``execution.PromptExecutor`` in the test process: the pack's own ``nodes``
package and ComfyUI's top-level ``nodes`` module share a name, so both cannot live in one
interpreter; and the interruption and progress paths go through ``main.py``'s hooks, which only a
started ComfyUI installs. The server is driven over HTTP and its websocket (aiohttp, one of ComfyUI's
own requirements).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

from hspace_sdworld.comfy_import import find_comfyui  # noqa: E402,F401  (one search for ComfyUI, shared with training and benches)
from tests.threads import test_threads  # noqa: E402

PACK_NAME = "comfyui-hspace"
# what the tests need from ComfyUI's requirements (installed by the README's test command)
NEEDED_MODULES = ("aiohttp", "yarl", "torchsde", "einops", "transformers", "scipy", "psutil", "alembic", "sqlalchemy",
                  "av", "comfyui_frontend_package")


def missing_requirements() -> list[str]:
    import importlib.util

    return [m for m in NEEDED_MODULES if importlib.util.find_spec(m) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Run:
    """One prompt as the server reported it: history entry, websocket messages, preview frames."""

    prompt_id: str
    history: dict
    messages: list[tuple[str, dict]] = field(default_factory=list)
    previews: int = 0

    @property
    def status(self) -> str:
        return self.history.get("status", {}).get("status_str", "")

    def events(self, kind: str) -> list[dict]:
        return [data for event, data in self.messages if event == kind]

    def error(self) -> dict | None:
        """The ``execution_error`` message (node_id, node_type, exception_message, ...), if any."""
        for event, data in self.history.get("status", {}).get("messages", []):
            if event == "execution_error":
                return data
        return None

    def outputs(self) -> dict:
        return self.history.get("outputs", {})

    def saved(self, base: Path, node: str) -> list[Path]:
        """The files a SaveImage node of this prompt wrote, under the server's base directory."""
        images = self.outputs().get(node, {}).get("images", [])
        return [base / "output" / im["subfolder"] / im["filename"] for im in images]


class ComfyServer:
    """``python main.py --cpu`` of a ComfyUI tree, on a free loopback port, with this pack installed."""

    def __init__(self, comfy_root: Path, base: Path):
        self.root, self.base = comfy_root, base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = base / "comfyui.log"

    # -------------------------------------------------------------- lifecycle

    def prepare(self) -> None:
        for sub in ("custom_nodes", "input", "output", "temp", "user", "models"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)

    def start(self, timeout: float = 240.0) -> None:
        self.prepare()
        args = [sys.executable, str(self.root / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:", "--disable-auto-launch",
                "--preview-size", "64"]
        # one torch thread per server under xdist (OMP_NUM_THREADS, read by PyTorch as it starts; ComfyUI sets
        # none): each worker's server computes while its worker waits, and two servers at two threads each on two
        # cores spin against each other
        threads = test_threads()
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        env.pop("PYTHONPATH", None)  # ComfyUI imports the pack from custom_nodes, as it does for users
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(args, cwd=str(self.base), stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        if getattr(self, "log", None) is not None:
            self.log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_mib(self) -> float:
        """Resident memory of the server process."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    # -------------------------------------------------------------- HTTP

    def get(self, path: str, timeout: float = 30) -> dict | list:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def post(self, path: str, body: dict, timeout: float = 30) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                data = r.read()
                return r.status, json.loads(data) if data else {}
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def queue(self, prompt: dict, client_id: str = "") -> tuple[int, dict]:
        return self.post("/prompt", {"prompt": prompt, "client_id": client_id or uuid.uuid4().hex})

    # -------------------------------------------------------------- running prompts

    def run(self, prompt: dict, timeout: float = 900, on_message=None) -> Run:
        """Queue ``prompt``, follow it on the websocket until ComfyUI reports it done, return its Run.
        ``on_message(server, event, data)`` is called for every JSON message (e.g. to interrupt)."""
        return asyncio.run(self._run(prompt, timeout, on_message))

    async def _run(self, prompt: dict, timeout: float, on_message) -> Run:
        import aiohttp

        client_id = uuid.uuid4().hex
        messages, previews = [], 0
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{self.url}/ws?clientId={client_id}", heartbeat=30) as ws:
                code, answer = await asyncio.to_thread(self.queue, prompt, client_id)
                if code != 200:
                    raise PromptRejected(answer)
                prompt_id = answer["prompt_id"]
                deadline = time.time() + timeout
                while True:
                    left = deadline - time.time()
                    if left <= 0:
                        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")
                    msg = await ws.receive(timeout=left)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        previews += 1
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"websocket closed: {msg.type}")
                    data = json.loads(msg.data)
                    event, body = data.get("type"), data.get("data", {})
                    messages.append((event, body))
                    if on_message is not None:
                        await asyncio.to_thread(on_message, self, event, body)
                    # "executing" with node None comes after the history entry is written (main.py)
                    if event == "executing" and body.get("node") is None and body.get("prompt_id") == prompt_id:
                        break
        history = self.get(f"/history/{prompt_id}").get(prompt_id, {})
        return Run(prompt_id, history, messages, previews)


class PromptRejected(Exception):
    """The server refused a prompt at validation (HTTP 400); ``args[0]`` is its answer."""
