"""Writes the hostile and broken fruits entries of tests/hostile/ (run it after editing this file).

    .venv/bin/python tests/hostile/build.py

Every attack notebook is the same correct fruits solution (BASE) with one hostile cell added, or a
task's cell replaced by an attempt to cheat it, so its expected verdicts are exact: full marks
where the attack gains or breaks nothing, zero on the tasks it tried to cheat. The attacks aim at
paths, ports and names that tests/test_hostile.py sets up and writes into the notebooks when it
stages the batch (the __PLACEHOLDERS__ below); nothing else on the machine is a target.
Expected verdicts live in expected.toml beside this file.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

IMPORTS = """\
import os
import numpy as np
import torch
from torch import nn
import matplotlib.pyplot as plt
from torchvision import datasets, models, transforms
DATA_DIR = os.path.join("data", "fruits")"""

F1 = """\
# F1
transform = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])"""

F2 = """\
# F2
trainset = datasets.ImageFolder(DATA_DIR, transform=transform,
                                is_valid_file=lambda path: os.path.basename(path) == "gallery.jpg")
testset = datasets.ImageFolder(DATA_DIR, transform=transform,
                               is_valid_file=lambda path: os.path.basename(path) == "probe.jpg")"""

F3 = """\
# F3
network = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
network.fc = nn.Identity()
network = network.eval()"""

F4 = """\
# F4
def extract(dataset, network):
    network.eval()
    features = {}
    with torch.no_grad():
        for image, label in dataset:
            features[label] = network(image.unsqueeze(0)).squeeze(0)
    return features

train_features = extract(trainset, network)
test_features = extract(testset, network)"""

F5 = """\
# F5: rows = test (true) class, columns = train (predicted) class
classes = trainset.classes
test_matrix = torch.stack([test_features[i] for i in range(len(classes))])
train_matrix = torch.stack([train_features[i] for i in range(len(classes))])
test_matrix = test_matrix / test_matrix.norm(dim=1, keepdim=True)
train_matrix = train_matrix / train_matrix.norm(dim=1, keepdim=True)
similarities = test_matrix @ train_matrix.T"""

F6 = """\
# F6
plt.figure(figsize=(6, 5))
plt.imshow(np.asarray(similarities), cmap="viridis")
plt.colorbar()
plt.show()"""

F7 = """\
# F7
predicted = torch.as_tensor(np.asarray(similarities)).argmax(dim=1)
accuracy = (predicted == torch.arange(len(classes))).float().mean().item()"""

F8 = """\
# F8
misclassified = [(classes[t], classes[p]) for t, p in enumerate(predicted.tolist()) if t != p]
flat = int(torch.as_tensor(np.asarray(similarities)).argmin())
most_dissimilar = (classes[flat // len(classes)], classes[flat % len(classes)])"""

BASE = {"imports": IMPORTS, "F1": F1, "F2": F2, "F3": F3, "F4": F4, "F5": F5, "F6": F6, "F7": F7, "F8": F8}

# Helpers the attack cells share: report what they managed, as the student would print it.
SAY = """\
import json as _json
def say(key, value):
    print("@@" + _json.dumps({key: value}, default=str), flush=True)
def attempt(key, action):
    try:
        action()
        say(key, "done")
    except BaseException as error:
        say(key, f"{type(error).__name__}: {error}"[:200])"""


def notebook(cells: dict[str, str], title: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# fruits: {title}")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells.values()]
    return nb


def with_cell(after: str, label: str, source: str) -> dict[str, str]:
    """BASE with one more cell right after the cell `after`."""
    cells: dict[str, str] = {}
    for key, value in BASE.items():
        cells[key] = value
        if key == after:
            cells[label] = source
    return cells


def replacing(task: str, source: str) -> dict[str, str]:
    return {key: (source if key == task else value) for key, value in BASE.items()}


ATTACKS: dict[str, tuple[str, dict[str, str]]] = {
    # -- runaway code --------------------------------------------------------------------------------
    "loop_endless": ("an endless loop in one cell", with_cell("F3", "loop", "while True:\n    pass")),
    "sleep_an_hour_first": ("a sleep of an hour in the first cell",
                            {"sleep": "import time\ntime.sleep(3600)", **BASE}),
    "output_flood": ("300 MB of printed output", with_cell("F8", "flood", """\
line = "x" * 999_999
for _ in range(300):
    print(line)""")),
    # Held to the end, after the last task's cell: the harvest must run beside it (the hard limit's
    # headroom). Before other cells it would leave them a random few MiB (whatever the last 256 MiB
    # buffer left), so whether a later cell's plot fits was luck.
    "memory_bomb": ("a memory bomb (list of large buffers) held to the end", with_cell("F8", "bomb", """\
hog = []
while True:
    hog.append(bytearray(256 * 2**20))""")),
    "memory_bomb_tmp": ("a memory bomb that rlimits cannot see (files in the sandbox's /tmp, a tmpfs)",
                        with_cell("F5", "bomb", """\
chunk = bytes(64 * 2**20)
for i in range(160):   # 10 GiB, above the memory limit
    with open(f"/tmp/fill{i}", "wb") as f:
        f.write(chunk)""")),
    "fork_bomb": ("a fork bomb", with_cell("F8", "forks", """\
import time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        children += 1
except OSError as error:
    print("forking stopped after", children, "children:", error)""")),
    # -- the kernel ends ------------------------------------------------------------------------------
    "os_exit": ("os._exit in the middle", with_cell("F4", "exit", "os._exit(3)")),
    "segfault": ("a segmentation fault", with_cell("F5", "crash", "import ctypes\nctypes.string_at(0)")),
    "abort": ("os.abort (SIGABRT) of its own kernel", with_cell("F2", "abort", "os.abort()")),
    # -- outside the sandbox --------------------------------------------------------------------------
    "writes_outside": ("writes results.json, grades.csv and a report outside its sandbox", with_cell("F8", "write", SAY + """
fake = '{"score": 999, "tests": []}'
targets = {
    "out_results": "__OUT__/writes_outside/results.json",
    "out_grades": "__OUT__/grades.csv",
    "out_report": "__OUT__/correct_identity_v1/report.html",
    "autograder_results": "__AUTOGRADER__/results/results.json",
    "grader_home": "__HOME__/results.json",
    "sandbox_parent": "../../results.json",
}
for key, path in targets.items():
    attempt(key, lambda path=path: open(path, "w").write(fake))
attempt("home_is_the_sandbox", lambda: open(os.path.expanduser("~/results.json"), "w").write(fake))""")),
    "deletes_files": ("deletes or edits every file it can reach", with_cell("F8", "vandal", SAY + """
import shutil, glob
attempt("edit_canary", lambda: open("__CANARY__", "a").write("vandalised"))
attempt("delete_canary", lambda: os.remove("__CANARY__"))
attempt("delete_reference", lambda: os.remove("__REPO__/reference/fruits.py"))
attempt("edit_torch", lambda: open(torch.__file__, "a").write("\\nraise SystemExit"))
attempt("delete_weights", lambda: [os.remove(p) for p in glob.glob("__WEIGHTS__/hub/checkpoints/*")])
attempt("delete_data", lambda: shutil.rmtree(DATA_DIR))
attempt("chmod_data", lambda: os.chmod(DATA_DIR, 0o000))""")),
    "background_process": ("leaves background processes running", with_cell("F8", "daemon", """\
import subprocess, sys
# a detached child, and a double-forked daemon: both must be gone when the run ends
subprocess.Popen(["sleep", "__MARKER__"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "__MARKER__"])
    os._exit(0)""")),
    # -- copying answers --------------------------------------------------------------------------------
    "snoop_reference": ("looks for the reference and the graders to copy F5", replacing("F5", SAY + """
import glob, sys
found = []
seen = 0
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
    seen += len(files)
    found += [os.path.join(root, f) for f in files
              if f in ("fruits.py", "expected.py", "test_fruits.py") or f.endswith(".npy") and "reference" in root]
    if seen > 200_000:
        break
for path in glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
    try:
        text = open(path, "rb").read().decode(errors="replace")
    except OSError:
        continue
    if "reference" in text or "graders" in text or "autograder" in text:
        found.append(path)
for name in ("reference", "reference.fruits", "graders", "graders.fruits", "autograder"):
    attempt("import_" + name, lambda name=name: __import__(name))
attempt("read_reference", lambda: found.append(open("__REPO__/reference/fruits.py").read()[:40]))
say("environment", sorted(os.environ))
say("found", found)
stolen = [np.load(p) for p in found if p.endswith("similarities.npy")]
classes = trainset.classes
if stolen:
    similarities = stolen[0]
else:   # nothing to copy: hand in a guess
    similarities = torch.rand(len(classes), len(classes), generator=torch.Generator().manual_seed(0))""")),
    "lying_objects": ("tensor subclasses and objects whose comparisons lie, plus patched comparisons",
                      {**replacing("F5", """\
# F5, F7 and F8 are wrong; every comparison is made to say otherwise
classes = trainset.classes
class Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func.__name__ in ("allclose", "equal", "__eq__", "isclose"):
            return True
        return super().__torch_function__(func, types, args, kwargs or {})
    def __eq__(self, other):
        return True
similarities = torch.zeros(len(classes), len(classes)).as_subclass(Agreeable)
torch.allclose = torch.equal = np.allclose = np.array_equal = lambda *a, **k: True
np.testing.assert_allclose = np.testing.assert_array_equal = lambda *a, **k: None"""),
                       "F7": """\
# F7
class AlwaysRight(float):
    def __eq__(self, other):
        return True
    __hash__ = float.__hash__
predicted = torch.zeros(len(classes), dtype=torch.long)
accuracy = AlwaysRight(0.0)""",
                       "F8": """\
# F8
class AlwaysEqualList(list):
    def __eq__(self, other):
        return True
misclassified = AlwaysEqualList([("nothing", "at all")])
most_dissimilar = AlwaysEqualList(["nothing", "at all"])"""}),
    "network": ("opens network connections (a loopback port of the grader's machine; lists routes)",
                with_cell("F8", "net", SAY + """
import socket
attempt("connect_grader_loopback", lambda: socket.create_connection(("127.0.0.1", __PORT__), timeout=3).close())
say("interfaces", [name for _, name in socket.if_nameindex()])
say("routes", open("/proc/net/route").read().splitlines()[1:])
server = socket.socket()
attempt("listen_inside", lambda: (server.bind(("127.0.0.1", 0)), server.listen(1)))
server.close()""")),
}


def truncated_notebook() -> str:
    text = json.dumps(notebook(BASE, "truncated"), indent=1)
    return text[: len(text) // 2]


def other_language_notebook() -> nbformat.NotebookNode:
    nb = notebook({"r": 'library(torch)\nprint("hello")'}, "an R notebook")
    nb.metadata["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    nb.metadata["language_info"] = {"name": "R"}
    return nb


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def zip_bomb() -> bytes:
    """300 MiB of zeros that deflate to about 300 KiB: above the 256 MiB the intake unpacks."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("fruits.ipynb", "w", force_zip64=True) as sink:
            block = bytes(2**20)
            for _ in range(300):
                sink.write(block)
    return buffer.getvalue()


def main() -> None:
    correct = nbformat.writes(notebook(BASE, "correct")).encode()
    for name, (title, cells) in ATTACKS.items():
        nbformat.write(notebook(cells, title), str(HERE / f"{name}.ipynb"))
    (HERE / "broken_truncated.ipynb").write_text(truncated_notebook())
    (HERE / "broken_empty.ipynb").write_bytes(b"")
    (HERE / "broken_notes.txt").write_text("I did the assignment on paper, see attached photo.\n")
    nbformat.write(other_language_notebook(), str(HERE / "broken_r_kernel.ipynb"))
    (HERE / "archive_nested.zip").write_bytes(zip_of({"home/student/cs587/fruits/final/fruits.ipynb": correct}))
    (HERE / "broken_escape.zip").write_bytes(zip_of({"../../escaped.ipynb": correct}))
    (HERE / "broken_zip_bomb.zip").write_bytes(zip_bomb())
    (HERE / "name with spaces é.ipynb").write_bytes(correct)
    two = HERE / "broken_two_notebooks"
    two.mkdir(exist_ok=True)
    (two / "fruits.ipynb").write_bytes(correct)
    (two / "fruits_old.ipynb").write_bytes(correct)


if __name__ == "__main__":
    main()
