"""fit_many(): many datasets through one compiled program, in-process and on a real Dask
LocalCluster of 2 worker processes (no mocks): results equal the same fits done one by one,
a failing dataset records its error, a killed worker's fits are rerun elsewhere, Ctrl-C stops
the batch and its CmdStan processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesglmm
from bayesglmm.batch import BatchResult

pytestmark = [pytest.mark.slow,  # short test runs: their convergence warnings are expected
              pytest.mark.filterwarnings("ignore:.*(R-hat|effective sample size).*")]

DEBATE_TRUE = {"Intercept": 1.9, "b[talk]": 0.27, "b[perf]": 0.16, "sigma": 0.78,
               "sd[group:Int]": 0.46}
PARS = list(DEBATE_TRUE)
QUICK = {"chains": 2, "warmup": 150, "sampling": 150}  # short runs: equality, not accuracy


@pytest.fixture(scope="module")
def dask_client():
    """A real LocalCluster with 2 worker processes (one thread each)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def debate_sim(debate_model):
    return debate_model.simulate(6, DEBATE_TRUE, seed=11)


def _one_by_one(model, datasets, method, seed=None, **args):
    return [getattr(model.update(data=d), method)(
        verbose=False, **({} if seed is None else {"seed": seed + i}), **args)
        for i, d in enumerate(datasets)]


def test_in_process_equals_one_by_one(debate_model, debate_compiled, debate_sim):
    res = bayesglmm.fit_many(debate_model, debate_sim, progress=False)
    assert isinstance(res, BatchResult) and len(res) == 6 and res.n_failed == 0
    df = res.to_frame()
    assert list(df.columns) == ["dataset", "parameter", "estimate", "se", "lower", "upper",
                                "rhat", "ess_bulk", "divergences", "converged", "elapsed",
                                "error"]
    assert sorted(df.dataset.unique()) == list(range(6))
    fits = _one_by_one(debate_model, debate_sim, "optimize")
    for i, f in enumerate(fits):
        got = df[df.dataset == i].set_index("parameter").loc[PARS]
        want = f.summary().loc[PARS]
        np.testing.assert_array_equal(got[["estimate", "se", "lower", "upper"]].to_numpy(),
                                      want[["estimate", "se", "lower", "upper"]].to_numpy())
    assert df.converged.all() and df.error.isna().all()
    rec = res.recovery()
    assert list(rec.index) == PARS
    assert list(rec.columns) == ["true", "mean_estimate", "bias", "rmse", "coverage",
                                 "coverage_se", "n"]
    assert (rec.n == 6).all()
    assert rec.loc["b[talk]", "true"] == 0.27
    est = df[df.parameter == "b[talk]"].estimate.to_numpy()
    assert rec.loc["b[talk]", "bias"] == pytest.approx(np.mean(est - 0.27))
    assert rec.loc["b[talk]", "rmse"] == pytest.approx(np.sqrt(np.mean((est - 0.27) ** 2)))


def test_failing_dataset_is_recorded(debate_model, debate_compiled, debate):
    bad = debate.copy()
    bad.loc[3, "sat"] = np.nan  # missing response: the model refuses it
    res = bayesglmm.fit_many(debate_model, [debate, bad, debate], progress=False)
    assert res.n_failed == 1 and list(res.errors) == [1]
    assert "Missing values" in res.errors[1] and "'sat'" in res.errors[1]
    df = res.to_frame()
    row = df[df.dataset == 1]
    assert len(row) == 1 and row.parameter.isna().all() and not row.converged.any()
    assert df[df.dataset != 1].error.isna().all()
    with pytest.raises(ValueError, match="needs data from Model.simulate"):
        res.recovery()


def test_binomial_classic_and_ordinal_optimize(cbpp_model, cbpp, wine_flat_model):
    sim = cbpp_model.simulate(3, {"Intercept": -1.4, "b[period2]": -1.0, "b[period3]": -1.1,
                                  "b[period4]": -1.6, "sd[herd:Int]": 0.6}, seed=2)
    res = bayesglmm.fit_many(cbpp_model, sim, method="classic", progress=False)
    one = _one_by_one(cbpp_model, sim, "classic")
    df = res.to_frame()
    for i, f in enumerate(one):
        got = df[df.dataset == i].set_index("parameter").estimate
        np.testing.assert_array_equal(got.to_numpy(), f.summary().loc[got.index, "estimate"])
    t = {"b[tempwarm]": 2.5, "b[contactyes]": 1.5, "cutpoints[C1]": -1.3, "cutpoints[C2]": 1.2,
         "cutpoints[C3]": 3.5, "cutpoints[C4]": 5.0, "sd[judge:Int]": 1.1}
    wsim = wine_flat_model.simulate(3, t, seed=3)
    wres = bayesglmm.fit_many(wine_flat_model, wsim, progress=False)
    wone = _one_by_one(wine_flat_model, wsim, "optimize")
    wdf = wres.to_frame()
    for i, f in enumerate(wone):
        got = wdf[wdf.dataset == i].set_index("parameter").estimate
        np.testing.assert_array_equal(got.to_numpy(), f.summary().loc[got.index, "estimate"])
    assert set(wres.recovery().index) == set(t)


def test_dask_equals_one_by_one(debate_model, debate_compiled, debate_sim, dask_client):
    """On 2 worker processes: optimize() tables equal the in-process ones; sample() with seeds
    gives the very draws of the same fits done one by one (same seeds)."""
    local = bayesglmm.fit_many(debate_model, debate_sim, progress=False).to_frame()
    res = bayesglmm.fit_many(debate_model, debate_sim, client=dask_client, progress=False)
    assert res.workers == 2
    pd.testing.assert_frame_equal(
        res.to_frame().drop(columns="elapsed"), local.drop(columns="elapsed"))
    assert len({r.worker for r in res.results}) == 2  # both workers fitted
    sub = debate_sim[:3]
    smp = bayesglmm.fit_many(debate_model, sub, method="sample", client=dask_client,
                             keep_fits=True, progress=False, seed=40, **QUICK)
    one = _one_by_one(debate_model, sub, "sample", seed=40, **QUICK)
    assert smp.seeds == [40, 41, 42]
    for a, b in zip(smp.fits, one):
        np.testing.assert_array_equal(a._draws, b._draws)
    df = smp.to_frame()
    assert df.rhat.notna().all() and (df.divergences >= 0).all()


def test_local_cluster_workers(debate_model, debate_compiled, debate_sim):
    """workers=2 starts (and closes) its own LocalCluster."""
    res = bayesglmm.fit_many(debate_model, debate_sim[:4], workers=2, progress=False)
    assert res.workers == 2 and res.n_failed == 0 and len(res) == 4


def _pid_of(client, address):
    return client.run(os.getpid)[address]


def test_killed_worker_reruns_its_fits(debate_model, debate_compiled, dask_client, debate):
    """A worker killed in the middle of a batch: its fits are rerun on the other worker (the
    nanny restarts it), and every dataset appears exactly once."""
    datasets = [debate] * 10
    box: dict = {}

    def run():
        box["res"] = bayesglmm.fit_many(debate_model, datasets, method="sample",
                                        client=dask_client, progress=False, seed=7,
                                        chains=1, warmup=300, sampling=300)

    th = threading.Thread(target=run)
    th.start()
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and th.is_alive():
        processing = dask_client.processing()
        busy = [w for w, keys in processing.items()
                if any(str(k).startswith("bayesglmm-fit-") for k in keys)]
        done = len(dask_client.who_has())
        if busy and done >= 2:
            killed = _pid_of(dask_client, busy[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    th.join(600)
    assert killed is not None, "the batch finished before a worker could be killed"
    res = box["res"]
    assert [r.index for r in res.results] == list(range(10))
    assert res.n_failed == 0, res.errors
    assert res.to_frame().groupby("dataset").size().eq(len(res.results[0].table)).all()
    workers = {r.worker for r in res.results}
    assert len(workers) >= 2


@pytest.mark.parametrize("where", ["in-process", "dask"])
def test_ctrl_c_stops_cmdstan(where, debate_model, debate_compiled, tmp_path):
    """SIGINT to a script running a batch of long sample() fits: the script stops with
    KeyboardInterrupt and no CmdStan process of it is left."""
    psutil = pytest.importorskip("psutil")
    script = tmp_path / "batch.py"
    script.write_text(textwrap.dedent(f"""
        import bayesglmm
        if __name__ == "__main__":
            d = bayesglmm.load_debate()
            m = bayesglmm.lmer("sat ~ talk + perf + (1 | group)", data=d,
                               prior=bayesglmm.prior_normal())
            try:
                bayesglmm.fit_many(m, [d] * 20, method="sample", progress=False,
                                   {"workers=2, " if where == "dask" else ""}
                                   chains=1, warmup=20000, sampling=20000, seed=1)
            except KeyboardInterrupt:
                print("INTERRUPTED", flush=True)
                raise
    """))
    env = dict(os.environ, PYTHONPATH=str(Path(bayesglmm.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    me = psutil.Process(proc.pid)

    def cmdstan():
        out = []
        for p in me.children(recursive=True):
            try:
                if any(a.startswith("method=sample") for a in p.cmdline()):
                    out.append(p)
            except psutil.Error:
                pass
        return out

    deadline = time.time() + 240
    while not cmdstan() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
    running = cmdstan()
    assert running, "no CmdStan process started: " + (proc.stderr.read() if proc.poll() else "")
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert "INTERRUPTED" in out and "KeyboardInterrupt" in err
    time.sleep(1.0)
    alive = [p for p in running if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"CmdStan still running: {[p.pid for p in alive]}"


def test_argument_errors(debate_model, debate):
    with pytest.raises(ValueError, match="method must be one of"):
        bayesglmm.fit_many(debate_model, [debate], method="nuts")
    with pytest.raises(ValueError, match="not both"):
        bayesglmm.fit_many(debate_model, [debate], workers=2, client=object())
    with pytest.raises(TypeError, match="iterable of DataFrames"):
        bayesglmm.fit_many(debate_model, debate)
    with pytest.raises(ValueError, match="2 seeds for 1 datasets"):
        bayesglmm.fit_many(debate_model, [debate], seed=[1, 2])


@pytest.mark.filterwarnings("ignore:.*ADVI.*")
def test_variational_equals_one_by_one(debate_model, debate_compiled, debate_sim):
    sub = debate_sim[:2]
    res = bayesglmm.fit_many(debate_model, sub, method="variational", keep_fits=True,
                             progress=False, seed=3, draws=200)
    one = _one_by_one(debate_model, sub, "variational", seed=3, draws=200)
    for a, b in zip(res.fits, one):
        np.testing.assert_array_equal(a._draws, b._draws)
    df = res.to_frame()
    assert df.divergences.isna().all() and df.rhat.isna().all()
    assert set(df.converged) <= {True, False}


def test_program_shipped_to_workers_with_their_own_cache(debate_model, debate_compiled,
                                                         debate_sim, tmp_path):
    """Workers whose BAYESGLMM_HOME is another, empty model cache (as on another host; the same
    toolchain, linked): the batch installs the caller's compiled program into their cache
    (no compile) and their fits equal the in-process ones."""
    import json

    from bayesglmm.batch.ship import ship_program

    distributed = pytest.importorskip("distributed")
    tc = debate_compiled.toolchain
    home = tmp_path / "home"
    home.mkdir()
    if tc.kind == "bundled":
        (home / "toolchain").symlink_to(tc.root.resolve())
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0",
                                       env={"BAYESGLMM_HOME": str(home)})
    client = distributed.Client(cluster)
    try:
        assert set(client.run(lambda: os.environ["BAYESGLMM_HOME"]).values()) == {str(home)}
        res = bayesglmm.fit_many(debate_model, debate_sim, client=client, progress=False)
        local = bayesglmm.fit_many(debate_model, debate_sim, progress=False)
        pd.testing.assert_frame_equal(res.to_frame().drop(columns="elapsed"),
                                      local.to_frame().drop(columns="elapsed"))
        entries = [e for e in (home / "models").iterdir()
                   if e.is_dir() and not e.name.startswith(".")]
        assert len(entries) == 1  # the program, installed once for both workers
        manifest = json.loads((entries[0] / "MANIFEST.json").read_text())
        # installed from the caller's entry, not compiled (a build records its timings)
        assert manifest["installed_from"]["hash"] == debate_compiled.hash
        assert manifest["timings"] == {}
        assert not list(entries[0].glob("*.hpp"))
        exe = entries[0] / debate_compiled.exe_file.name
        assert exe.read_bytes() == debate_compiled.exe_file.read_bytes()
        # the workers have it now: the next batch sends nothing
        assert ship_program(client, debate_compiled) is None
    finally:
        client.close()
        cluster.close()


@pytest.mark.filterwarnings("ignore:.*(ADVI|Pathfinder).*")
def test_variational_batch_leaves_no_directories(debate_model, debate_compiled, debate_sim,
                                                 tmp_path, monkeypatch):
    """Every variational() fit of a batch removes its files, in this process and on the
    workers (long-lived processes would otherwise fill the temporary folder). This process
    and the workers get temporary folders of their own, so that other jobs' files do not
    count."""
    import tempfile

    import cmdstanpy

    distributed = pytest.importorskip("distributed")

    def listing(root):
        return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))

    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(here))
    before = listing(cmdstanpy._TMPDIR)
    sub = debate_sim[:4]
    res = bayesglmm.fit_many(debate_model, sub, method="variational", progress=False, seed=5,
                             draws=100)
    assert res.n_failed == 0
    debate_model.pathfinder(draws=100, num_paths=2, seed=1, verbose=False)
    assert listing(here) == [] and listing(cmdstanpy._TMPDIR) == before
    there = tmp_path / "workers"
    there.mkdir()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", env={"TMPDIR": str(there)})
    client = distributed.Client(cluster)
    try:
        tmpdirs = client.run(lambda: __import__("cmdstanpy")._TMPDIR)  # imported: its folder
        assert all(Path(t).parent == there for t in tmpdirs.values())
        before = listing(there)
        res = bayesglmm.fit_many(debate_model, sub, method="variational", client=client,
                                 progress=False, seed=5, draws=100)
        assert res.n_failed == 0
        assert listing(there) == before
    finally:
        client.close()
        cluster.close()
