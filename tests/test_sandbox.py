"""The sandbox, from the student's side: real jailed kernels running hostile cells.

Two runs do the work (each costs a few seconds): PROBE runs one notebook whose cells try, one
each, what a submission must not be able to do (read the reference, write outside its folder, reach
the network, see the grader's environment, exhaust memory or processes, loop, kill its kernel) and
print what happened as `@@{json}` lines; DEADLINE runs a cell that ignores interrupts and sleeps.
Each check is its own test reading those records. Every hostile action is bounded and aimed only at
files, sockets and processes the test made.
"""
from __future__ import annotations

import gc
import inspect
import json
import os
import queue
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import zmq
from jupyter_core.utils import run_sync

from autograder.execution import PromptKernelClient, RunRecord, SubmissionRunner, _Execution
from autograder.sandbox import GiB, Limits, Sandbox, bubblewrap_works, forks_kernels, remove_left_behind

needs_bwrap = pytest.mark.skipif(
    not (bubblewrap_works() and shutil.which("setpriv")),
    reason="bubblewrap (run as root, with namespaces) and setpriv are needed to build the sandbox; "
           "without them the harness degrades to plain processes and these isolation checks do not apply")

HARVEST = "def harvest(ns, ex, probes):\n    ex.write()\n"
MAX_PROCESSES = 64
CELL_TIMEOUT_S = 5
DEADLINE_S = 8        # kernel start-up (a second or two) counts against it
DISK_MIB = 64         # the probe sandbox's own tmpfs

PRELUDE = """\
import json, os, socket, sys
def report(key, value):
    print("@@" + json.dumps({key: value}), flush=True)
def attempt(key, action):
    try:
        action()
        report(key, "ok")
    except BaseException as error:
        report(key, f"{type(error).__name__}: {error}")
report("ids", [os.getuid(), os.geteuid(), os.getgid(), os.getegid()])
report("cwd", os.getcwd())
_status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
report("privileges", {k: _status[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Groups")})
def _target(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:   # the listing's own descriptor, closed by now
        return None
report("descriptors", sorted(filter(None, map(_target, os.listdir("/proc/self/fd")))))
report("autograder_modules", sorted(m for m in sys.modules if "autograder" in m or m.startswith(("graders", "reference"))))
"""


@dataclass
class Run:
    record: RunRecord
    executed: nbformat.NotebookNode
    reports: dict
    cell_of: dict          # label -> index of the cell in the notebook
    sandbox_base: Path

    def cell(self, label: str):
        index = self.cell_of[label]
        return next(c for c in self.record.cells if c.index == index)

    @property
    def uid(self) -> int:
        """The sandbox's private uid, as the run's record of its defences states it."""
        for line in self.record.defences.get("active", []):
            found = re.search(r"private unprivileged uid (\d+)", line)
            if found:
                return int(found.group(1))
        raise AssertionError(f"no private uid among the defences: {self.record.defences}")


def run_cells(tmp: Path, name: str, cells: list[tuple[str, str]], limits: Limits, *, store: Path,
              data: dict | None = None, forked: bool = False) -> Run:
    """Run labelled cells in a fresh sandbox; collect every `@@{json}` line they printed. `forked`:
    as a batch worker does, with kernels forked from a fork server (its zygote's open descriptors
    are kept in the reports as "zygote_descriptors")."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(s)) for _, s in cells])
    base = tmp / "sandboxes"
    runner = SubmissionRunner(limits=limits, weight_store=store, sandbox_base=base, warm=forked,
                              warm_imports=("torch",) if forked else ())
    try:
        record, executed = runner.run(notebook, name=name, files=[], files_base=tmp, data=data or {}, probes=None,
                                      harvest_source=HARVEST, export_to=tmp / "export")
        zygote = runner._fork_server.process.pid if runner._fork_server else None
        zygote_descriptors = sorted(os.readlink(f) for f in Path(f"/proc/{zygote}/fd").iterdir()) if zygote else []
    finally:
        runner.close()
    run = Run(record, executed, printed_reports(executed), {label: i for i, (label, _) in enumerate(cells)}, base)
    run.reports["zygote_descriptors"] = zygote_descriptors
    run.reports["zygote_after"] = zygote is not None and Path(f"/proc/{zygote}").exists()
    return run


def printed_reports(executed: nbformat.NotebookNode) -> dict:
    """Every `@@{json}` line the cells printed, merged."""
    reports = {}
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines() if output.get("output_type") == "stream" else []:
                if line.startswith("@@"):
                    reports.update(json.loads(line[2:]))
    return reports


def processes_of(uid: int) -> list[str]:
    """Every process (zombies included) whose real or effective uid is `uid`."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if str(uid) in fields.get("Uid", "").split()[:2]:
            found.append(f"{status.parent.name} {fields.get('Name', '').strip()} {fields.get('State', '').strip()}")
    return found


def leftover_cgroups(name: str) -> list[Path]:
    root = Path("/sys/fs/cgroup")
    return list(root.glob(f"autograder-{name}-*")) + list(root.glob(f"*/autograder-{name}-*"))


# -- the probe run ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["exec", "forked"])
def probe(tmp_path_factory, repo, request):
    """The probe notebook run twice: by a kernel exec'd in its sandbox (a single `check`), and by
    one forked into it from a batch worker's fork server (zygote.py), which must not differ."""
    if not (bubblewrap_works() and shutil.which("setpriv")):
        pytest.skip("no bubblewrap sandbox here")
    forked = request.param == "forked"
    tmp = tmp_path_factory.mktemp("probe")
    outside = tmp / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("original")
    store = tmp / "store"
    (store / "hub" / "checkpoints").mkdir(parents=True)
    (store / "hub" / "checkpoints" / "dummy.pth").write_text("original weights")
    for folder in (store, store / "hub", store / "hub" / "checkpoints"):
        os.chmod(folder, 0o755)
    os.chmod(store / "hub" / "checkpoints" / "dummy.pth", 0o644)
    data = tmp / "data"
    data.mkdir()
    (data / "sample.txt").write_text("fixture data")
    os.chmod(data, 0o755)
    os.chmod(data / "sample.txt", 0o644)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5):  # control: reachable from outside
        accepted, _ = listener.accept()
        accepted.close()
    listener.setblocking(False)

    marker_name, secret = "AUTOGRADER_TEST_MARKER", secrets.token_hex(8)
    checkpoint = store / "hub" / "checkpoints"
    cells = [
        ("prelude", PRELUDE),
        ("files", f"""\
            attempt("read_reference", lambda: open({str(repo / 'reference' / 'fruits.py')!r}).read())
            attempt("read_graders", lambda: open({str(repo / 'graders' / 'fruits' / 'expected.py')!r}).read())
            attempt("list_repo", lambda: report("repo_listing", os.listdir({str(repo)!r})))
            attempt("write_work", lambda: open("mine.txt", "w").write("mine"))
            attempt("write_sandbox_root", lambda: open("../escape.txt", "w").write("x"))
            attempt("write_outside_new", lambda: open({str(outside / 'new.txt')!r}, "w").write("x"))
            attempt("write_outside_existing", lambda: open({str(outside / 'keep.txt')!r}, "a").write("x"))
            attempt("read_store", lambda: report("store_text", open({str(checkpoint / 'dummy.pth')!r}).read()))
            attempt("write_store_new", lambda: open({str(checkpoint / 'new.pth')!r}, "w").write("x"))
            attempt("write_store_existing", lambda: open({str(checkpoint / 'dummy.pth')!r}, "a").write("x"))
            attempt("read_data", lambda: report("data_text", open("data/fruits/sample.txt").read()))
            attempt("write_data", lambda: open("data/fruits/new.txt", "w").write("x"))
            """),
        ("network", f"""\
            import subprocess
            report("routes", open("/proc/net/route").read().splitlines()[1:])
            report("interfaces", [name for _, name in socket.if_nameindex()])
            ip = "/usr/bin/ip" if os.path.exists("/usr/bin/ip") else None
            report("ip_route", subprocess.run([ip, "route"], capture_output=True, text=True).stdout if ip else None)
            attempt("connect", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=5).close())
            """),
        ("environment", f"""\
            report("marker", os.environ.get({marker_name!r}))
            report("secret_in", [k for k, v in os.environ.items() if {secret!r} in v])
            report("sys_path", sys.path)
            """),
        ("hog", "hog = bytearray(3 * 1024**3)"),
        ("after_hog", "report('after_hog', True)"),
        ("loop", "while True:\n    pass"),
        ("after_loop", "report('after_loop', True)"),
        ("fork_bomb", """\
            import time
            made, stopped = 0, None
            try:
                for _ in range(400):
                    pid = os.fork()
                    if pid == 0:
                        time.sleep(30)
                        os._exit(0)
                    made += 1
            except OSError as error:
                stopped = f"{type(error).__name__}: {error}"
            report("forks", [made, stopped])
            """),
        ("disk_bomb", f"""\
            written, stopped = 0, None
            try:
                for i in range({DISK_MIB * 4}):
                    with open(f"filler{{i}}.bin", "wb") as f:
                        f.write(bytes(2**20))
                    written += 1
            except OSError as error:
                stopped = f"{{type(error).__name__}}: {{error}}"
            for i in range(written):
                os.remove(f"filler{{i}}.bin")
            report("disk", [written, stopped])
            """),
        ("suicide", "os.kill(os.getpid(), 9)"),
        ("never", "report('never', True)"),
    ]
    limits = Limits(cell_timeout_s=CELL_TIMEOUT_S, total_timeout_s=90, memory_bytes=1 * GiB,
                    max_processes=MAX_PROCESSES, cpu_seconds=90, max_disk_bytes=DISK_MIB * 2**20)
    name = f"probe{secrets.token_hex(3)}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(marker_name, secret)
        run = run_cells(tmp, name, cells, limits, store=store, data={"data/fruits": data}, forked=forked)
    try:
        incoming = listener.accept()[0]
        incoming.close()
        run.reports["listener_got_a_connection"] = True
    except BlockingIOError:
        run.reports["listener_got_a_connection"] = False
    finally:
        listener.close()
    run.reports["processes_after"] = processes_of(run.uid)
    run.reports["cgroups_after"] = leftover_cgroups(name)
    yield SimpleNamespace(run=run, outside=outside, store=store, data=data, repo=repo, forked=forked)


def denied(result: str) -> bool:
    return result.startswith(("PermissionError", "OSError: [Errno 30]", "FileNotFoundError"))


@needs_bwrap
def test_kernel_runs_as_a_private_unprivileged_uid(probe):
    run = probe.run
    uid, euid, gid, egid = run.reports["ids"]
    assert 0 not in (uid, euid, gid, egid)
    assert uid == euid == run.uid and gid == egid
    assert uid != os.getuid()


@needs_bwrap
def test_the_kernel_holds_no_capability_no_group_and_no_new_privileges(probe):
    privileges = probe.run.reports["privileges"]
    assert {k: int(privileges[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
    assert privileges["NoNewPrivs"] == "1" and privileges["Groups"] == ""


@needs_bwrap
def test_the_forked_probe_ran_in_forked_kernels_and_the_exec_d_one_did_not(probe):
    forked = [line for line in probe.run.record.defences["active"] if line.startswith("kernel forked")]
    assert bool(forked) == probe.forked, probe.run.record.defences
    assert probe.run.reports["zygote_after"] is False      # the runner's close() ended its zygote


@needs_bwrap
def test_a_forked_kernel_shares_no_descriptor_with_its_zygote_and_holds_no_grader_module(probe):
    channels = {t for t in probe.run.reports["zygote_descriptors"] if t.startswith(("socket:", "pipe:"))}
    if probe.forked:
        assert channels, "the zygote's channel to the grader should be among its descriptors"
    assert not channels & set(probe.run.reports["descriptors"])
    assert probe.run.reports["autograder_modules"] == []


@needs_bwrap
def test_reference_and_graders_are_not_readable(probe):
    reports = probe.run.reports
    assert (probe.repo / "reference" / "fruits.py").is_file()  # it exists outside
    assert reports["read_reference"].startswith(("FileNotFoundError", "PermissionError")), reports["read_reference"]
    assert reports["read_graders"].startswith(("FileNotFoundError", "PermissionError")), reports["read_graders"]
    listing = reports.get("repo_listing", [])
    assert "reference" not in listing and "graders" not in listing and "autograder" not in listing


@needs_bwrap
def test_work_folder_is_writable(probe):
    assert probe.run.reports["write_work"] == "ok"  # control: the kernel can write where it should


@needs_bwrap
def test_writing_outside_the_work_folder_fails(probe):
    reports = probe.run.reports
    for key in ("write_outside_new", "write_outside_existing"):
        assert denied(reports[key]), (key, reports[key])
    # The sandbox's own folder, above the work folder, is visible inside but not writable.
    assert reports["write_sandbox_root"].startswith("PermissionError"), reports["write_sandbox_root"]
    assert sorted(p.name for p in probe.outside.iterdir()) == ["keep.txt"]
    assert (probe.outside / "keep.txt").read_text() == "original"


@needs_bwrap
def test_weight_store_is_readable_but_not_writable(probe):
    reports = probe.run.reports
    assert reports["store_text"] == "original weights"
    for key in ("write_store_new", "write_store_existing"):
        assert denied(reports[key]) and not reports[key].startswith("FileNotFoundError"), (key, reports[key])
    checkpoints = probe.store / "hub" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["dummy.pth"]
    assert (checkpoints / "dummy.pth").read_text() == "original weights"


@needs_bwrap
def test_data_is_mounted_read_only(probe):
    reports = probe.run.reports
    assert reports["data_text"] == "fixture data"
    assert denied(reports["write_data"]) and not reports["write_data"].startswith("FileNotFoundError")
    assert sorted(p.name for p in probe.data.iterdir()) == ["sample.txt"]


@needs_bwrap
def test_network_namespace_has_no_routes(probe):
    reports = probe.run.reports
    assert reports["routes"] == []
    assert reports["interfaces"] == ["lo"]
    if reports["ip_route"] is not None:
        assert reports["ip_route"].strip() == ""


@needs_bwrap
def test_loopback_port_of_the_host_is_unreachable_inside(probe):
    reports = probe.run.reports
    assert reports["connect"].startswith(("ConnectionRefusedError", "OSError", "TimeoutError")), reports["connect"]
    assert reports["listener_got_a_connection"] is False


@needs_bwrap
def test_grader_environment_is_not_visible(probe):
    assert probe.run.reports["marker"] is None
    assert probe.run.reports["secret_in"] == []


@needs_bwrap
def test_repo_root_is_not_on_sys_path(probe):
    paths = probe.run.reports["sys_path"]
    root = str(probe.repo)
    assert paths, "sys.path was not reported"
    assert [p for p in paths if os.path.normpath(p or probe.run.reports["cwd"]) == root] == []
    assert probe.run.reports["cwd"] != root


@needs_bwrap
def test_memory_hog_gets_memory_error_and_the_next_cell_runs(probe):
    run = probe.run
    hog = run.cell("hog")
    assert hog.status == "error" and hog.error.startswith("MemoryError"), (hog.status, hog.error)
    assert run.cell("after_hog").status == "ok"
    assert run.reports["after_hog"] is True


@needs_bwrap
def test_endless_loop_is_interrupted_and_the_next_cell_runs(probe):
    run = probe.run
    loop = run.cell("loop")
    assert loop.status == "timeout", (loop.status, loop.error)
    assert loop.error == f"stopped after the {CELL_TIMEOUT_S} s cell limit"
    assert run.cell("after_loop").status == "ok" and run.reports["after_loop"] is True


@needs_bwrap
def test_fork_bomb_is_stopped_by_the_process_limit(probe):
    made, stopped = probe.run.reports["forks"]
    assert stopped is not None, f"the loop made all {made} children"
    assert stopped.startswith(("BlockingIOError", "OSError")), stopped
    assert 0 < made < MAX_PROCESSES


@needs_bwrap
def test_no_process_of_the_sandbox_remains(probe):
    assert probe.run.reports["forks"][0] > 0  # there were children to clean up
    assert probe.run.reports["processes_after"] == []


@needs_bwrap
def test_sandbox_folder_and_cgroups_are_removed(probe):
    assert list(probe.run.sandbox_base.iterdir()) == []
    assert probe.run.reports["cgroups_after"] == []


@needs_bwrap
def test_kernel_that_kills_itself_is_reported_and_the_rest_is_run_again_without_it(probe):
    run = probe.run
    index = run.cell_of["suicide"]
    assert run.record.outcome == "died"
    assert run.record.message.startswith(f"The kernel died in cell {index + 1}: killed (SIGKILL).")
    assert f"run again in a fresh kernel without cell {index + 1}" in run.record.message
    assert run.cell("suicide").status == "died"
    # The replay skipped the fatal cell and ran the rest; the harvest then collected.
    assert run.reports.get("never") is True and run.cell("never").status == "ok"
    assert run.record.harvest_status == "ok"
    assert "skipped when the notebook was run again" in run.executed.cells[index].outputs[0]["text"]


@needs_bwrap
def test_disk_bomb_fills_only_the_sandbox_folder_s_own_tmpfs(probe):
    written, stopped = probe.run.reports["disk"]
    assert written < DISK_MIB and stopped and "No space left on device" in stopped
    assert any("own tmpfs" in line for line in probe.run.record.defences["active"])


# -- a private uid without bubblewrap (a container that allows no namespaces) ---------------------------------
@pytest.fixture(scope="module")
def uid_only(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("a private uid needs root and setpriv")
    # Without bubblewrap the private uid sees the real tree: its folders must be reachable by
    # others, which pytest's own 0700 tmp folder is not.
    tmp = Path(tempfile.mkdtemp(prefix="autograder-uid-only-"))
    os.chmod(tmp, 0o755)
    outside = tmp / "outside"
    outside.mkdir()
    marker = f"598.{secrets.randbelow(10**8):08d}"
    limits = Limits(cell_timeout_s=CELL_TIMEOUT_S, total_timeout_s=60, memory_bytes=1 * GiB,
                    max_processes=MAX_PROCESSES)
    store = tmp / "store"
    store.mkdir()
    os.chmod(store, 0o755)
    # Another submission's sandbox beside this one (a second worker's), handed to its own uid.
    other = Sandbox(tmp / "sandboxes", "other", limits, weight_store=store, isolation="uid").__enter__()
    (other.work / "their_notebook.ipynb").write_text("another student's work")
    other.hand_over()
    cells = [
        ("prelude", PRELUDE),
        ("write", f"attempt('write_outside', lambda: open({str(outside / 'x.txt')!r}, 'w').write('x'))"),
        ("other", f"attempt('read_other', lambda: open({str(other.work / 'their_notebook.ipynb')!r}).read())\n"
                  f"attempt('list_other', lambda: os.listdir({str(other.work)!r}))"),
        ("daemon", f"""\
            import subprocess
            subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execvp("sleep", ["sleep", "{marker}"])
                os._exit(0)
            """),
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(s)) for _, s in cells])
    runner = SubmissionRunner(limits=limits, weight_store=store, sandbox_base=tmp / "sandboxes", isolation="uid")
    try:
        record, executed = runner.run(notebook, name="uidonly", files=[], files_base=tmp, data={}, probes=None,
                                      harvest_source=HARVEST, export_to=tmp / "export")
    finally:
        other.__exit__(None, None, None)
    reports = printed_reports(executed)
    leftovers = [p.parent.name for p in Path("/proc").glob("[0-9]*/cmdline")
                 if _read(p).find(marker.encode()) >= 0]
    yield SimpleNamespace(record=record, reports=reports, outside=outside, leftovers=leftovers)
    shutil.rmtree(tmp, ignore_errors=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_without_bubblewrap_the_kernel_still_runs_as_a_private_uid(uid_only):
    uid = uid_only.reports["ids"][0]
    assert uid >= 100000 and uid_only.reports["ids"] == [uid] * 4
    assert any(f"private unprivileged uid {uid}" in line for line in uid_only.record.defences["active"])
    assert any(line.startswith("bubblewrap") and "not asked for" in line for line in uid_only.record.defences["missing"])


def test_without_bubblewrap_the_private_uid_cannot_write_the_grader_s_folders(uid_only):
    assert uid_only.reports["write_outside"].startswith("PermissionError")
    assert list(uid_only.outside.iterdir()) == []


def test_without_bubblewrap_a_kernel_cannot_read_the_submission_beside_it(uid_only):
    """Two workers' sandboxes share the sandbox folder: each one's folders are private to its uid."""
    assert uid_only.reports["read_other"].startswith("PermissionError"), uid_only.reports["read_other"]
    assert uid_only.reports["list_other"].startswith("PermissionError"), uid_only.reports["list_other"]


def test_without_bubblewrap_every_process_of_the_private_uid_is_killed(uid_only):
    assert uid_only.record.harvest_status == "ok"
    assert uid_only.leftovers == []


@pytest.mark.slow
def test_without_bubblewrap_the_grader_shuts_its_reference_cache_and_other_reports(tmp_path):
    """`grade.py check --isolation uid`: the kernel sees the real file tree as its private uid, so
    the grader makes the reference, graders, cached answers, hidden inputs, kept runs and the
    reports folder private to itself; the weight store stays readable and the grade is whole."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("a private uid needs root and setpriv")
    from autograder.workspace import Workspace
    repo, cache = Path(__file__).resolve().parent.parent, Workspace().cache
    out = Path(tempfile.mkdtemp(prefix="autograder-uid-out-"))   # others may enter it, as out/ may
    try:
        os.chmod(out, 0o755)
        (out / "other_entry").mkdir(mode=0o755)
        (out / "other_entry" / "results.json").write_text('{"score": 15}')
        tries = {"reference": repo / "reference" / "fruits.py", "graders": repo / "graders" / "fruits" / "expected.py",
                 "cached_answers": cache / "reference", "probes": cache / "probes", "kept_runs": cache / "runs",
                 "other_report": out / "other_entry" / "results.json", "weights": cache / "torch"}
        cell = PRELUDE + "".join(
            f"attempt({name!r}, lambda: os.listdir({str(path)!r}) if os.path.isdir({str(path)!r}) "
            f"else open({str(path)!r}).read())\n" for name, path in tries.items())
        notebook = nbformat.read(str(repo / "submissions" / "fruits" / "alice_correct.ipynb"), as_version=4)
        notebook.cells.append(nbformat.v4.new_code_cell(cell))
        nbformat.write(notebook, str(tmp_path / "alice.ipynb"))
        completed = subprocess.run([sys.executable, "grade.py", "check", str(tmp_path / "alice.ipynb"),
                                    "--assignment", "fruits", "--isolation", "uid", "--out", str(out)],
                                   cwd=repo, capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
        reports = printed_reports(nbformat.read(str(out / "alice" / "executed.ipynb"), as_version=4))
        assert reports["ids"][0] >= 100000
        for name in tries:
            if name == "weights":
                assert reports[name] == "ok", reports[name]   # the kernel loads its checkpoints from there
            else:
                assert reports[name].startswith("PermissionError"), (name, reports[name])
        results = json.loads((out / "alice" / "results.json").read_text())
        assert sum(t["score"] for t in results["tests"]) == 15, results["output"]
    finally:
        shutil.rmtree(out, ignore_errors=True)


# -- the deadline run ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deadline(tmp_path_factory):
    if not (bubblewrap_works() and shutil.which("setpriv")):
        pytest.skip("no bubblewrap sandbox here")
    tmp = tmp_path_factory.mktemp("deadline")
    cells = [
        ("prelude", PRELUDE),
        ("stubborn", """\
            import signal, time
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            report("sleeping", True)
            time.sleep(3600)
            """),
        ("after", "report('after', True)"),
    ]
    # The cell limit is far above the submission's: only the whole-submission deadline can stop it.
    limits = Limits(cell_timeout_s=120, total_timeout_s=DEADLINE_S, memory_bytes=1 * GiB,
                    max_processes=MAX_PROCESSES)
    name = f"deadline{secrets.token_hex(3)}"
    store = tmp / "store"
    store.mkdir()
    run = run_cells(tmp, name, cells, limits, store=store)
    run.reports["processes_after"] = processes_of(run.uid)
    run.reports["cgroups_after"] = leftover_cgroups(name)
    return run


@needs_bwrap
def test_whole_submission_deadline_stops_a_cell_that_ignores_interrupts(deadline):
    record = deadline.record
    assert deadline.reports.get("sleeping") is True, f"the stubborn cell never started: {record.message}"
    assert record.outcome == "timeout"
    assert record.message.startswith(f"The submission ran past its time limit of {DEADLINE_S} s and was stopped")
    assert "after" not in deadline.reports
    assert deadline.cell("after").status == "not run"
    assert record.harvest_status == "not run"
    assert deadline.reports["processes_after"] == []
    assert deadline.reports["cgroups_after"] == []


@needs_bwrap
def test_cell_stopped_by_the_deadline_is_not_reported_ok(deadline):
    assert deadline.cell("stubborn").status != "ok"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_kernel_recovered_is_true_when_the_kernel_replies():
    class AnsweringKernel:
        """kernel_info the way AsyncKernelClient has it, for an idle kernel."""

        def kernel_info(self, reply=False, timeout=None):
            async def answer():
                return {"header": {"msg_type": "kernel_info_reply"}, "content": {"status": "ok"}}
            return answer() if reply else "msg-id"

    execution = _Execution.__new__(_Execution)
    execution.client = SimpleNamespace(kc=AnsweringKernel())
    assert execution._kernel_recovered() is True


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_kernel_recovered_is_false_when_the_kernel_never_replies():
    from jupyter_client.asynchronous import AsyncKernelClient
    assert inspect.iscoroutinefunction(AsyncKernelClient._recv_reply)  # reply=True returns a coroutine

    class SilentKernel:
        """kernel_info the way AsyncKernelClient has it, for a kernel that never answers."""

        def kernel_info(self, reply=False, timeout=None):
            async def wait():
                raise queue.Empty
            return wait() if reply else "msg-id"

    execution = _Execution.__new__(_Execution)
    execution.client = SimpleNamespace(kc=SilentKernel())
    assert execution._kernel_recovered() is False


class _ScriptedChannel:
    """A channel whose messages are queued by the test; an empty one times out at once."""

    def __init__(self):
        self.messages: list[dict] = []

    async def get_msg(self, timeout=None):
        if not self.messages:
            raise queue.Empty
        return self.messages.pop(0)


class ScriptedKernel(PromptKernelClient):
    """PromptKernelClient over scripted channels. `iopub_joined`: per kernel_info request, whether
    iopub carries its status messages (a SUB socket misses what is sent before it has joined)."""

    def __init__(self, iopub_joined: list[bool], alive: bool = True):
        super().__init__()
        self.joined, self.alive, self.requests = list(iopub_joined), alive, []
        self.shell, self.iopub = _ScriptedChannel(), _ScriptedChannel()
        self.iopub.messages.append(self._message("status", "an-earlier-request", execution_state="idle"))

    shell_channel = property(lambda self: self.shell)
    iopub_channel = property(lambda self: self.iopub)

    @staticmethod
    def _message(kind: str, parent: str, **content) -> dict:
        return {"msg_type": kind, "parent_header": {"msg_id": parent}, "content": content}

    def kernel_info(self):
        msg_id = f"request-{len(self.requests)}"
        self.requests.append(msg_id)
        if self.alive:
            self.shell.messages.append(self._message("kernel_info_reply", msg_id, protocol_version="5.3"))
            if self.joined.pop(0):
                self.iopub.messages += [self._message("status", msg_id, execution_state="busy"),
                                        self._message("status", msg_id, execution_state="idle")]
        return msg_id

    async def _async_is_alive(self):
        return self.alive


def test_a_kernel_is_ready_once_its_answer_to_kernel_info_has_come_on_shell_and_iopub():
    kernel = ScriptedKernel(iopub_joined=[True])
    run_sync(kernel.wait_for_ready)(timeout=5)
    assert kernel.requests == ["request-0"]
    assert kernel.iopub.messages == []   # the other request's idle was read and dropped, not taken for ours


def test_a_kernel_whose_iopub_missed_the_answer_is_asked_again():
    kernel = ScriptedKernel(iopub_joined=[False, False, True])
    run_sync(kernel.wait_for_ready)(timeout=5)
    assert kernel.requests == ["request-0", "request-1", "request-2"]


def test_a_kernel_that_died_before_answering_is_not_waited_for():
    with pytest.raises(RuntimeError, match="died"):
        run_sync(ScriptedKernel(iopub_joined=[], alive=False).wait_for_ready)(timeout=5)


# -- the harvest's two steps ----------------------------------------------------------------------------------
TWO_STEP_HARVEST = """\
def harvest(ns, ex, probes):
    ex.value("x", lambda: ns["x"])
    ex.on_request("asked", lambda: ns["x"] + 1)
    ex.on_request("not asked", lambda: open("not-asked-was-run", "w").write("yes"))
    ex.on_request("kills", lambda: __import__("os")._exit(3))
    ex.write()
"""


@pytest.mark.parametrize("requests,computed", [
    (lambda student: {"asked"} if student.get("x") == 41 else set(), ["asked"]),   # sees the first step
    (lambda student: set(), []),
    (lambda student: 1 / 0, ["asked", "not asked"]),   # a grader that cannot say: all ("kills" last)
])
def test_the_second_harvest_step_computes_only_what_the_graders_ask_for(tmp_path, requests, computed):
    """The kernel waits between the steps; a value not asked for never runs; a kernel that dies in
    the second step keeps the first step's values."""
    from autograder.artefacts import ON_REQUEST, Artefacts
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 41")])
    store = tmp_path / "store"
    store.mkdir()
    runner = SubmissionRunner(limits=Limits(cell_timeout_s=30, total_timeout_s=60, memory_bytes=1 * GiB,
                                            max_processes=MAX_PROCESSES),
                              weight_store=store, sandbox_base=tmp_path / "sandboxes")
    record, executed = runner.run(notebook, name="steps", files=[], files_base=tmp_path, data={}, probes=None,
                                  harvest_source=TWO_STEP_HARVEST, export_to=tmp_path / "export",
                                  requests=requests)
    student = Artefacts(tmp_path / "export")
    assert record.harvest_status == "ok" and student.get("x") == 41
    assert [n for n in ("asked", "not asked") if student.status(n) != ON_REQUEST] == computed
    if computed:
        assert student.get("asked") == 42
    if "not asked" in computed:   # asked for everything: "kills" ended the kernel, the rest is kept
        assert "the kernel died" in record.harvest_error and student.status("kills") == ON_REQUEST
    else:
        assert record.harvest_error == ""
    assert len(executed.cells) == 1   # the harvest cells leave no trace in the executed notebook


# -- spare kernels (a batch worker's warm start) -------------------------------------------------------------
@pytest.fixture(scope="module")
def spares(tmp_path_factory):
    """Three submissions in a row through one warm runner: the first starts cold, the next two take
    the spares started while the one before ran; then the runner is closed, as a worker ends."""
    tmp = tmp_path_factory.mktemp("spares")
    store = tmp / "store"
    store.mkdir()
    limits = Limits(cell_timeout_s=60, total_timeout_s=120, memory_bytes=2 * GiB, max_processes=MAX_PROCESSES)
    cells = [("prelude", PRELUDE), ("seen", """\
        report("torch_imported", "torch" in sys.modules)
        report("names", sorted(n for n in globals() if not n.startswith("_")))
        report("state_before", globals().get("STATE"))
        STATE = "left by an earlier submission"
        report("files", sorted(os.listdir(".")))
        attempt("torch_name", lambda: torch)
        open("left_by_me.txt", "w").write("for whoever comes next")
        """)]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(s)) for _, s in cells])
    base = tmp / "sandboxes"
    channels_before = _kernel_channels()
    runner = SubmissionRunner(limits=limits, weight_store=store, sandbox_base=base, warm=True,
                              warm_imports=("torch",))
    runs = []
    for name in ("first", "second", "third"):
        own = tmp / name
        own.mkdir()
        (own / f"{name}.txt").write_text(name)
        record, executed = runner.run(notebook, name=name, files=[own / f"{name}.txt"], files_base=own, data={},
                                      probes=None, harvest_source=HARVEST, export_to=tmp / name / "export")
        runs.append(SimpleNamespace(record=record, reports=printed_reports(executed)))
    waiting = sorted(p.name for p in base.iterdir())   # the spare started during the third run
    runner.close()
    yield SimpleNamespace(runs=runs, waiting=waiting, left=sorted(p.name for p in base.iterdir()),
                          channels_left=_kernel_channels() - channels_before)


def _kernel_channels() -> set[int]:
    """ZeroMQ contexts not closed and heartbeat threads running, in this process."""
    from jupyter_client.channels import HBChannel
    return {id(o) for o in gc.get_objects() if isinstance(o, zmq.Context) and not o.closed} | \
        {id(t) for t in threading.enumerate() if isinstance(t, HBChannel)}


def test_a_spare_kernel_has_imported_torch_but_bound_no_name(spares):
    first, second, third = spares.runs
    assert [r.record.warm_kernel for r in spares.runs] == [False, True, True]
    for run in (second, third):
        assert run.record.harvest_status == "ok" and run.record.outcome == "finished"
        assert run.reports["torch_imported"] is True
        assert "torch" not in run.reports["names"]
        assert run.reports["torch_name"].startswith("NameError")   # forgetting `import torch` still fails
    # A batch worker's fork server imported torch once, before its first kernel; without one, the
    # first kernel (not a spare) starts bare.
    assert first.reports["torch_imported"] is forks_kernels("auto")
    assert "torch" not in first.reports["names"]


def test_each_submission_gets_its_own_kernel_folder_and_uid_from_a_spare(spares):
    assert [r.reports["state_before"] for r in spares.runs] == [None, None, None]   # a fresh interpreter each
    for name, run in zip(("first", "second", "third"), spares.runs):
        assert run.reports["files"] == [f"{name}.txt"]     # nothing of the submission before it
    if os.geteuid() == 0 and shutil.which("setpriv"):
        uids = [r.reports["ids"][0] for r in spares.runs]
        assert len(set(uids)) == 3 and min(uids) >= 100000


def test_closing_the_runner_removes_its_spare(spares):
    assert len(spares.waiting) == 1 and spares.waiting[0].startswith("warm-")
    assert spares.left == []
    assert not [p for p in Path("/sys/fs/cgroup").glob("*/autograder-warm-*") if p.is_dir()
                and any(p.name.endswith(w.removeprefix("warm-")) for w in spares.waiting)]


def test_a_worker_keeps_no_socket_or_thread_of_the_kernels_it_ran(spares):
    """A worker grades hundreds of entries: each kernel's channels (a heartbeat thread), sockets and
    zmq contexts, the spare's included, are closed with it."""
    assert spares.channels_left == set()


def test_a_private_uid_held_by_another_sandbox_or_process_is_not_drawn(tmp_path, monkeypatch):
    import autograder.sandbox.jail as jail
    taken_by_a_folder, taken_by_a_process, free = 100001, 100002, 100003
    (tmp_path / "other-1234" / "work").mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(tmp_path / "other-1234" / "work", taken_by_a_folder, taken_by_a_folder)
    else:   # without root no folder can be handed over: its owner is us, and that uid is in use too
        taken_by_a_folder = os.getuid()
    real_in_use = jail._uids_in_use
    monkeypatch.setattr(jail, "_uids_in_use", lambda base, folders: real_in_use(base, folders) | {taken_by_a_process})
    draws = iter([taken_by_a_folder, taken_by_a_process, free])
    monkeypatch.setattr(jail.secrets, "randbelow", lambda n: next(draws) - jail.PRIVATE_UIDS.start)
    assert jail._unused_uid(tmp_path) == free


def _cgroups_of(root: Path) -> list[Path]:
    name = f"autograder-{root.name}"
    cgroups = Path("/sys/fs/cgroup")
    return [g for g in (cgroups / name, cgroups / "memory" / name, cgroups / "pids" / name) if g.is_dir()]


@needs_bwrap
def test_a_killed_grader_s_sandbox_is_removed_by_the_next_runner_and_a_live_one_is_not(tmp_path):
    """SIGKILL gives a grader no clean-up: its sandbox's tmpfs (memory) and cgroups stay until the
    next runner on the same base removes them."""
    base = tmp_path / "sandboxes"
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from autograder.sandbox import Limits, Sandbox
        box = Sandbox(Path({str(base)!r}), "killed", Limits(), weight_store=Path({str(tmp_path)!r})).__enter__()
        print(box.root, flush=True)
        time.sleep(60)
    """)
    grader = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent.parent,
                              stdout=subprocess.PIPE, text=True)
    try:
        left = Path(grader.stdout.readline().strip())
    finally:
        grader.kill()   # the process this test started, by its id
        grader.wait(timeout=10)
    assert left.name.startswith("killed-") and os.path.ismount(left) and _cgroups_of(left)

    with Sandbox(base, "alive", Limits(), weight_store=tmp_path) as alive:
        runner = SubmissionRunner(limits=Limits(), weight_store=tmp_path, sandbox_base=base)
        runner._new_sandbox("next", {}).__exit__(None, None, None)
        assert not left.exists() and not os.path.ismount(left) and not _cgroups_of(left)
        assert alive.root.is_dir() and os.path.ismount(alive.root) and _cgroups_of(alive.root)
        assert remove_left_behind(base) == []
    assert list(base.iterdir()) == []


# -- the jail of the system tools that read student files (unar, lsar, pdftoppm) ------------------
TOOL_PROBE = """\
id -u > uid
cat "$1" > copy
cat "$2" > leak 2>&1
cat /etc/shadow > shadow 2>&1
echo changed 2> input-write >> "$1"
touch "$3/escaped" 2> escape-write
cat /proc/net/dev > net 2>&1
"""


@pytest.mark.parametrize("level", ["bwrap", "uid"])
def test_a_tool_reading_a_student_file_sees_only_a_copy_of_it_and_runs_as_nobody(tmp_path, level):
    from autograder.sandbox.tools import TOOL_UIDS, ToolJail
    if level == "bwrap" and not bubblewrap_works() or not shutil.which("setpriv") or os.geteuid() != 0:
        pytest.skip("root, setpriv (and for the first level bubblewrap) are needed to jail a tool")
    entry, secret = tmp_path / "entry.rar", tmp_path / "grader-secret.txt"
    entry.write_bytes(b"Rar!\x1a\x07\x00 the student's bytes")
    secret.write_text("cheese-4417")
    secret.chmod(0o600)
    tmp_path.chmod(0o755)   # even where the tool could reach the folder, the file stays closed to it
    with ToolJail(entry, file_bytes=2**20, memory_bytes=2**30, cpu_seconds=10) as jail:
        jail.use_bwrap = level == "bwrap"
        seen_input = jail.input
        code = jail.run(["/bin/sh", "-c", TOOL_PROBE, "probe", jail.input, str(secret), str(tmp_path)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        wrote = {p.name: p.read_text() for p in jail.out_dir.iterdir()}
        jail.hand_back()
        owners = {p.stat().st_uid for p in jail.out_dir.iterdir()}
        scratch = jail.scratch
    assert code == 0
    assert int(wrote["uid"]) in TOOL_UIDS
    assert wrote["copy"].encode() == entry.read_bytes()
    assert "cheese-4417" not in wrote["leak"] and "root:" not in wrote["shadow"]
    assert entry.read_bytes() == b"Rar!\x1a\x07\x00 the student's bytes" and wrote["input-write"]
    assert not (tmp_path / "escaped").exists() and wrote["escape-write"]
    assert owners == {0} and not scratch.exists()
    if level == "bwrap":
        assert seen_input.startswith("/job/") and "No such file" in wrote["leak"]
        interfaces = [line.split(":")[0].strip() for line in wrote["net"].splitlines()[2:]]
        assert interfaces == ["lo"]


def test_a_tool_s_output_is_read_only_when_it_is_a_plain_file_of_its_own(tmp_path):
    from autograder.sandbox.tools import ToolJail
    entry = tmp_path / "report.pdf"
    entry.write_bytes(b"%PDF-1.4")
    with ToolJail(entry, file_bytes=2**20, memory_bytes=2**30, cpu_seconds=10) as jail:
        (jail.out_dir / "page.png").symlink_to(entry)
        (jail.out_dir / "big.png").write_bytes(b"x" * 100)
        os.mkfifo(jail.out_dir / "fifo.png")
        (jail.out_dir / "plain.png").write_bytes(b"\x89PNG")
        assert jail.output("page.png", 1000) is None       # a link, to anything the grader may read
        assert jail.output("big.png", 99) is None
        assert jail.output("fifo.png", 1000) is None       # would block a reader for ever
        assert jail.output("missing.png", 1000) is None
        assert jail.output("plain.png", 1000) == b"\x89PNG"


# -- forked kernels: what happens when the fork server fails ------------------------------------------
needs_forking = pytest.mark.skipif(not forks_kernels("auto"), reason="kernels are forked only with bubblewrap, "
                                   "a private uid (root) and AUTOGRADER_FORK_SERVER unset")
FORKED_CELLS = PRELUDE + 'report("torch_imported", "torch" in sys.modules)\n'


def _forked(record: RunRecord) -> bool:
    return any(line.startswith("kernel forked") for line in record.defences["active"])


def _warm_runner(tmp: Path) -> SubmissionRunner:
    (tmp / "store").mkdir()     # beside the sandboxes: bound over them, tmp's mode 0700 would shut them
    return SubmissionRunner(limits=Limits(cell_timeout_s=30, total_timeout_s=90), weight_store=tmp / "store",
                            sandbox_base=tmp / "sandboxes", warm=True, warm_imports=("torch",))


def _run_warm(runner: SubmissionRunner, tmp: Path, name: str):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(FORKED_CELLS)])
    record, executed = runner.run(notebook, name=name, files=[], files_base=tmp, data={}, probes=None,
                                  harvest_source=HARVEST, export_to=tmp / name)
    return record, printed_reports(executed)


@needs_forking
def test_a_kernel_the_fork_server_cannot_fork_starts_the_plain_way(tmp_path, monkeypatch, capfd):
    from autograder.sandbox import ForkFailed, ForkServer

    def refuse(self, holder_pid, **_):
        raise ForkFailed("refused by the test")
    monkeypatch.setattr(ForkServer, "fork_kernel", refuse)
    runner = _warm_runner(tmp_path)
    try:
        record, reports = _run_warm(runner, tmp_path, "refused")
    finally:
        runner.close()
    assert record.outcome == "finished" and record.harvest_status == "ok"
    assert not _forked(record) and reports["torch_imported"] is False   # an exec'd kernel, imports not done
    assert reports["ids"][0] >= 100000                                  # still jailed: the private uid
    assert "kernel not forked (refused by the test); starting it the plain way" in capfd.readouterr().err


def test_the_folders_of_zygotes_that_are_gone_are_removed_and_no_other(tmp_path):
    """A grader killed by a signal leaves its zygote's folder (the zygote leaves when the channel
    closes); the next fork server removes it, by its owner file's pid and start time."""
    from autograder.sandbox.forkserver import FOLDER_PREFIX, remove_left_behind_folders
    from autograder.sandbox.jail import write_owner
    folders = {name: tmp_path / f"{FOLDER_PREFIX}{name}" for name in ("gone", "alive", "being-made")}
    other = tmp_path / "autograder-sandbox-x"      # not a zygote's folder, even with a dead owner
    for folder in [*folders.values(), other]:
        folder.mkdir()
        (folder / "zygote.log").write_text("log")
    ended = subprocess.Popen(["sleep", "30"])     # a zygote that is gone: a process this test started and ended
    write_owner(folders["gone"], ended.pid)
    write_owner(other, ended.pid)
    ended.kill()
    ended.wait()
    write_owner(folders["alive"], os.getpid())
    assert remove_left_behind_folders(tmp_path) == [folders["gone"]]
    assert not folders["gone"].exists()
    assert folders["alive"].exists() and folders["being-made"].exists() and other.exists()


@needs_forking
def test_a_fork_server_that_died_is_replaced_by_the_next_sandbox(tmp_path):
    runner = _warm_runner(tmp_path)
    try:
        first, _ = _run_warm(runner, tmp_path, "first")
        assert runner._spare.result() is not None   # the second run's spare, forked on the runner's thread
        zygote = runner._fork_server.process
        owner = (runner._fork_server._folder / "owner").read_text().split()
        assert owner[0] == str(zygote.pid)     # what remove_left_behind_folders reads
        zygote.kill()          # the process this runner started, by its Popen handle
        zygote.wait()
        second, _ = _run_warm(runner, tmp_path, "second")
        third, reports = _run_warm(runner, tmp_path, "third")
        replaced = runner._fork_server.process
    finally:
        runner.close()
    assert [_forked(r) for r in (first, second, third)] == [True, True, True]
    assert [r.outcome for r in (first, second, third)] == ["finished"] * 3
    assert replaced.pid != zygote.pid and reports["torch_imported"] is True
    assert replaced.poll() is not None      # close() ended the new one too
