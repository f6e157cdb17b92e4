"""A standalone Rheo cluster of processes on 127.0.0.1 for the dashboard and Flink-CLI tests:
`rheo jobmanager` and one `rheo taskmanager`, on free ports, logging to files."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

RHEO = os.environ.get("RHEO_BIN", "rheo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=120.0):
    """Polls `check` until it returns a truthy value; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # the server may not be up yet
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


class Cluster:
    def __init__(self, workdir: Path, slots: int = 4):
        self.dir = workdir
        self.rest_port = free_port()
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.config = [
            f"jobmanager.rpc.port={free_port()}",
            "jobmanager.rpc.address=127.0.0.1",
            f"rest.port={self.rest_port}",
            "rest.bind-address=127.0.0.1",
            "execution.checkpointing.interval=500ms",
            f"state.checkpoints.dir=file://{workdir}/checkpoints",
            f"state.savepoints.dir=file://{workdir}/savepoints",
            f"taskmanager.numberOfTaskSlots={slots}",
            "taskmanager.data.port=0",
        ]
        self.processes = []

    def _spawn(self, name, args):
        log = open(self.dir / f"{name}.log", "w")
        command = [RHEO, args[0]] + [a for kv in self.config for a in ("-D", kv)] + args[1:]
        process = subprocess.Popen(command, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "RHEO_LOG": "info"})
        self.processes.append(process)
        return process

    def start(self):
        self._spawn("jobmanager", ["jobmanager"])
        self._spawn("taskmanager", ["taskmanager"])
        wait_for("a registered TaskManager", lambda: self.get("/overview")["taskmanagers"] >= 1)
        return self

    def stop(self):
        for process in self.processes:
            process.kill()
            process.wait()

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.load(response)

    def rheo(self, *args, check=True):
        """Runs a `rheo` client command against this cluster; returns its stdout."""
        result = subprocess.run([RHEO, *args[:1], "-m", self.url, *args[1:]], cwd=self.dir,
                                capture_output=True, text=True, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"rheo {' '.join(args)} failed ({result.returncode}): {result.stderr}{result.stdout}")
        return result

    def submit(self, *job):
        """Submits a job (waiting until it runs); returns its id."""
        out = self.rheo("submit", *job).stdout
        line = next(l for l in out.splitlines() if "JobID" in l)
        return line.split("JobID")[1].split()[0]

    def state(self, job_id):
        return self.get(f"/jobs/{job_id}")["state"]

    def completed_checkpoints(self, job_id):
        return self.get(f"/jobs/{job_id}/checkpoints")["counts"]["completed"]
