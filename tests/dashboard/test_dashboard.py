"""Runs the headless-Chromium dashboard test (dashboard.test.mjs) against a cluster with a
running job."""

import os
import subprocess
from pathlib import Path

from cluster import wait_for

HERE = Path(__file__).parent


def test_dashboard_shows_graph_checkpoints_and_takes_a_savepoint(cluster):
    job_id = cluster.submit("datagen-word-count", "--rate", "2000")
    wait_for("a running job", lambda: cluster.state(job_id) == "RUNNING")
    screenshot = os.environ.get("SCREENSHOT", str(cluster.dir / "dashboard.png"))
    env = {**os.environ, "RHEO_URL": cluster.url, "JOB_ID": job_id, "SCREENSHOT": screenshot}
    result = subprocess.run(["node", str(HERE / "dashboard.test.mjs")], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(screenshot).stat().st_size > 0
