"""Starts a real `sesame serve` for the Python checks: a fresh SQLite
database in a temporary directory, console delivery, the given clients."""

import os
import socket
import subprocess
import sys
import tempfile
import time

import requests

BIN = os.environ.get("SESAME_TEST_BIN", "target/debug/sesame")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(clients_toml, env):
    """Returns (issuer, process) once /health/ready answers."""
    workdir = tempfile.mkdtemp(prefix="sesame-py-")
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    with open(os.path.join(workdir, "clients.toml"), "w") as f:
        f.write(clients_toml)
    with open(os.path.join(workdir, "sesame.toml"), "w") as f:
        f.write(f"""
issuer = "{issuer}"
clients_file = "{os.path.join(workdir, 'clients.toml')}"
[server]
bind = "127.0.0.1:{port}"
workers = 2
[database]
url = "sqlite://{os.path.join(workdir, 'sesame.db')}"
[log]
level = "warn"
""")
    child = subprocess.Popen([BIN, "serve", "--config", os.path.join(workdir, "sesame.toml")], env=dict(os.environ, **env))
    for _ in range(300):
        if child.poll() is not None:
            sys.exit(f"sesame serve exited with {child.returncode}")
        try:
            if requests.get(f"{issuer}/health/ready", timeout=1).ok:
                return issuer, child
        except requests.RequestException:
            # Refused, or accepted but not answered yet (still starting): try again.
            pass
        time.sleep(0.1)
    sys.exit("sesame did not become ready")


def stop(child):
    child.terminate()
    child.wait(10)
