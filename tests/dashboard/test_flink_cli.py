"""The real Flink 2.3 command-line client (`flink` from PyPI's apache-flink-libraries) against a
Rheo JobManager: list, cancel, savepoint, stop, and a clear refusal of `flink run`."""

import os
import re
import subprocess
from pathlib import Path

from cluster import wait_for

FLINK = os.environ.get("FLINK_BIN", "flink")


def flink(cluster, *args, check=True):
    result = subprocess.run([FLINK, *args[:1], "-m", f"127.0.0.1:{cluster.rest_port}", *args[1:]],
                            capture_output=True, text=True, timeout=300, cwd=cluster.dir)
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, f"flink {' '.join(args)} failed ({result.returncode}):\n{output}"
    return result.returncode, output


def running_job(cluster):
    job_id = cluster.submit("datagen-word-count", "--rate", "2000")
    wait_for("a running job", lambda: cluster.state(job_id) == "RUNNING")
    return job_id


def test_list_savepoint_stop_cancel(cluster):
    first = running_job(cluster)

    _, out = flink(cluster, "list")
    assert "Running/Restarting Jobs" in out
    assert re.search(rf"{first} : datagen-word-count \(RUNNING\)", out), out
    _, out = flink(cluster, "list", "-r")
    assert first in out and "Scheduled" not in out

    wait_for("a completed checkpoint", lambda: cluster.completed_checkpoints(first) >= 1)
    _, out = flink(cluster, "savepoint", first)
    path = re.search(r"Savepoint completed\. Path: (\S+)", out)
    assert path, out
    metadata = Path(path.group(1).removeprefix("file:")) / "_metadata"
    assert metadata.exists(), f"{metadata} missing; output:\n{out}"

    _, out = flink(cluster, "savepoint", "-d", path.group(1))
    assert "Savepoint '" in out and "disposed" in out, out

    _, out = flink(cluster, "stop", first)
    assert re.search(r"Savepoint completed\. Path: \S+", out), out
    wait_for("the stopped job to finish", lambda: cluster.state(first) == "FINISHED")

    # Every submission is a job of its own: the second one is not the first.
    second = running_job(cluster)
    assert second != first
    savepoints = cluster.dir / "stop-savepoints"
    _, out = flink(cluster, "stop", "-p", f"file://{savepoints}", second)
    assert f"file://{savepoints}/savepoint-" in out, out
    wait_for("the second job to finish", lambda: cluster.state(second) == "FINISHED")

    third = running_job(cluster)
    _, out = flink(cluster, "cancel", third)
    assert f"Cancelled job {third}." in out, out
    wait_for("the cancelled job", lambda: cluster.state(third) == "CANCELED")

    _, out = flink(cluster, "list", "-a")
    for job, state in [(first, "FINISHED"), (second, "FINISHED"), (third, "CANCELED")]:
        assert re.search(rf"{job} : datagen-word-count \({state}\)", out), out
    _, out = flink(cluster, "list", "-r")
    assert "No running jobs." in out, out


def test_flink_run_of_a_jar_says_what_to_do(cluster, tmp_path):
    jar = Path(os.environ["FLINK_TEST_JAR"]) if "FLINK_TEST_JAR" in os.environ else None
    assert jar is not None and jar.exists(), "FLINK_TEST_JAR: a jar whose main calls env.execute() (mk/dashboard.mk builds it)"
    code, out = flink(cluster, "run", str(jar), check=False)
    assert code != 0
    assert "rheo submit" in out, out
