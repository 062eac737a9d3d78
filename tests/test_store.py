import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# The package is not installed in the venv; make the repo root importable.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pipeline.core.store import ArtifactReader, ArtifactWriter  # noqa: E402


# ---------------------------------------------------------------- roundtrip

def test_roundtrip(tmp_path):
    path = str(tmp_path / "cams.h5")
    rng = np.random.default_rng(0)
    cam = rng.random((3, 17, 23)) * 4 - 2          # float64, arbitrary values
    lab = rng.integers(0, 256, size=(17, 23))       # int64 within 0..255
    mask = rng.random((5, 6)) > 0.5

    with ArtifactWriter(path, meta={"stage": "cam", "scales": [1.0, 0.5]}) as w:
        w.write("2007_000032", cam, classes=np.array([3, 15]), name="img", score=0.25)
        w.write("2007_000039", lab)
        w.write("m-1.x", mask)
        assert w.done_keys() == {"2007_000032", "2007_000039", "m-1.x"}
        assert os.path.exists(path + ".partial")
        assert not os.path.exists(path)

    assert os.path.exists(path)
    assert not os.path.exists(path + ".partial")

    r = ArtifactReader(path)
    assert r.keys() == ["2007_000032", "2007_000039", "m-1.x"]
    assert len(r) == 3 and "2007_000039" in r and "nope" not in r

    got = r["2007_000032"]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, cam.astype(np.float16))
    got = r["2007_000039"]
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, lab)
    np.testing.assert_array_equal(r["m-1.x"], mask.astype(np.uint8))

    a = r.attrs("2007_000032")
    assert set(a) == {"classes", "name", "score"}
    np.testing.assert_array_equal(a["classes"], [3, 15])
    assert a["name"] == "img" and a["score"] == 0.25
    assert r.attrs("2007_000039") == {}
    assert r.meta == {"stage": "cam", "scales": [1.0, 0.5]}

    with pytest.raises(KeyError, match="nope"):
        r["nope"]
    r.close()

    # Independent check of the on-disk layout with raw h5py.
    with h5py.File(path, "r") as f:
        ds = f["2007_000032"]
        assert ds.compression == "gzip" and ds.compression_opts == 4 and ds.shuffle
        assert ds.chunks == cam.shape


def test_reader_missing_file(tmp_path):
    missing = str(tmp_path / "missing.h5")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        ArtifactReader(missing)


@pytest.mark.parametrize("bad", [np.array([0, 256]), np.array([-1, 3]), np.array([300], np.uint16)])
def test_out_of_range_labels_rejected(tmp_path, bad):
    w = ArtifactWriter(str(tmp_path / "a.h5"))
    with pytest.raises(ValueError, match="img_7"):
        w.write("img_7", bad)
    assert w.done_keys() == set()
    w.close()
    with h5py.File(str(tmp_path / "a.h5.partial"), "r") as f:
        assert "img_7" not in f


@pytest.mark.parametrize("key", ["a/b", "/x", "", ".", "..", "a b", "é"])
def test_bad_key_rejected(tmp_path, key):
    w = ArtifactWriter(str(tmp_path / "a.h5"))
    with pytest.raises(ValueError) as info:
        w.write(key, np.zeros(3))
    assert repr(key) in str(info.value)
    w.close()


def test_exception_in_context_keeps_partial(tmp_path):
    path = str(tmp_path / "a.h5")
    with pytest.raises(RuntimeError):
        with ArtifactWriter(path) as w:
            w.write("k1", np.ones(4))
            raise RuntimeError("boom")
    assert not os.path.exists(path)
    assert ArtifactWriter(path).done_keys() == {"k1"}


# ---------------------------------------------------------------- crash and resume

N_KEYS = 200


def _key(i):
    return f"img_{i:04d}"


def _content(i):
    # Deterministic per-key content, exactly representable in float16.
    return (np.arange(64 * 48, dtype=np.float64).reshape(64, 48) % 97 + i) / 8.0


CHILD_SCRIPT = """
import sys, time
import numpy as np
from pipeline.core.store import ArtifactWriter
path, n = sys.argv[1], int(sys.argv[2])
w = ArtifactWriter(path, meta={"p": 1})
for i in range(n):
    key = f"img_{i:04d}"
    w.write(key, (np.arange(64 * 48, dtype=np.float64).reshape(64, 48) % 97 + i) / 8.0, idx=i)
    print(key, flush=True)
    time.sleep(0.01)
w.finish()
"""


def test_crash_and_resume(tmp_path):
    path = str(tmp_path / "cams.h5")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, path, str(N_KEYS)],
        cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen = []
    deadline = time.monotonic() + 30
    try:
        while len(seen) < 30:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer exited early: {proc.stderr.read()}")
            seen.append(line.strip())
            assert time.monotonic() < deadline, "writer too slow"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not os.path.exists(path)  # killed before finish: never published
    assert os.path.exists(path + ".partial")

    all_keys = {_key(i) for i in range(N_KEYS)}
    w = ArtifactWriter(path, meta={"p": 1})
    done = w.done_keys()
    assert done and done <= all_keys
    assert set(seen) <= done  # every key printed was written and flushed first
    for i in range(N_KEYS):
        if _key(i) not in done:
            w.write(_key(i), _content(i), idx=i)
    w.finish()

    r = ArtifactReader(path)
    assert r.keys() == sorted(all_keys)
    for i in range(N_KEYS):
        np.testing.assert_array_equal(r[_key(i)], _content(i).astype(np.float16))
        assert r.attrs(_key(i))["idx"] == i
    assert r.meta == {"p": 1}

    with h5py.File(path, "r") as f:  # independent check, bypassing the reader
        names = list(f.keys())
        assert len(names) == len(set(names)) == N_KEYS and set(names) == all_keys
        for i in range(N_KEYS):
            np.testing.assert_array_equal(f[_key(i)][()], _content(i).astype(np.float16))


# ---------------------------------------------------------------- interrupted mid-key

def test_incomplete_dataset_is_dropped(tmp_path):
    path = str(tmp_path / "a.h5")
    w = ArtifactWriter(path)
    w.write("good", np.ones((4, 4)))
    w.close()
    # Simulate a kill between data and marker: dataset present, no completion attr.
    with h5py.File(path + ".partial", "a") as f:
        f.create_dataset("half", data=np.zeros((4, 4), np.float16))
        f["half"].attrs["classes"] = np.array([1])

    w = ArtifactWriter(path)
    assert w.done_keys() == {"good"}
    w.close()
    with h5py.File(path + ".partial", "r") as f:
        assert set(f.keys()) == {"good"}

    w = ArtifactWriter(path)
    w.write("half", np.full((4, 4), 2.0))
    w.finish()
    r = ArtifactReader(path)
    assert r.keys() == ["good", "half"]
    np.testing.assert_array_equal(r["half"], np.full((4, 4), 2.0, np.float16))


# ---------------------------------------------------------------- corrupt partial

def test_corrupt_partial_moved_aside(tmp_path, capfd):
    path = str(tmp_path / "a.h5")
    garbage = os.urandom(4096)
    Path(path + ".partial").write_bytes(garbage)

    w = ArtifactWriter(path)
    assert w.done_keys() == set()
    logged = capfd.readouterr().err.splitlines()
    assert len(logged) == 1 and "a.h5.partial cannot be opened" in logged[0] and ".corrupt-" in logged[0]
    w.write("k", np.arange(5))
    w.finish()

    aside = [p for p in os.listdir(tmp_path) if p.startswith("a.h5.partial.corrupt-")]
    assert len(aside) == 1
    assert (tmp_path / aside[0]).read_bytes() == garbage
    np.testing.assert_array_equal(ArtifactReader(path)["k"], np.arange(5))


# ---------------------------------------------------------------- meta change

def test_meta_change_starts_fresh(tmp_path, capfd):
    path = str(tmp_path / "a.h5")
    w = ArtifactWriter(path, meta={"thr": 0.5, "scales": [1, 2]})
    w.write("k1", np.ones(3))
    w.close()

    # Same parameters (different dict order): resume.
    w = ArtifactWriter(path, meta={"scales": [1, 2], "thr": 0.5})
    assert w.done_keys() == {"k1"}
    w.close()

    capfd.readouterr()
    w = ArtifactWriter(path, meta={"thr": 0.7, "scales": [1, 2]})
    assert w.done_keys() == set()
    logged = capfd.readouterr().err.splitlines()
    assert len(logged) == 1 and "a.h5.partial changed since it was written: parameter thr (0.5 -> 0.7)" \
        in logged[0]
    assert [p for p in os.listdir(tmp_path) if p.startswith("a.h5.partial.stale-")]
    w.write("k2", np.zeros(3))
    w.finish()
    r = ArtifactReader(path)
    assert r.keys() == ["k2"]
    assert r.meta == {"thr": 0.7, "scales": [1, 2]}


def test_set_meta(tmp_path):
    path = str(tmp_path / "a.h5")
    with ArtifactWriter(path) as w:
        w.set_meta({"model": "resnet50", "k": 3})
    assert ArtifactReader(path).meta == {"model": "resnet50", "k": 3}


# ---------------------------------------------------------------- fork safety

def _child_read(reader, keys, queue):
    try:
        queue.put({k: reader[k].tolist() for k in keys})
    except Exception as exc:  # report instead of hanging the parent
        queue.put(repr(exc))


def test_reader_in_forked_child(tmp_path):
    path = str(tmp_path / "a.h5")
    expected = {f"k{i}": np.full((3, 5), i, np.uint8) + np.arange(5, dtype=np.uint8) for i in range(6)}
    with ArtifactWriter(path) as w:
        for k, v in expected.items():
            w.write(k, v)

    reader = ArtifactReader(path)
    np.testing.assert_array_equal(reader["k0"], expected["k0"])  # parent opens the file first

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child_read, args=(reader, sorted(expected), queue)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=20) for _ in procs]
    for p in procs:
        p.join(timeout=20)
        assert p.exitcode == 0

    for res in results:
        assert isinstance(res, dict), res
        for k, v in expected.items():
            np.testing.assert_array_equal(np.array(res[k], np.uint8), v)
    # Parent handle still works after the children used their own.
    np.testing.assert_array_equal(reader["k5"], expected["k5"])
    reader.close()
