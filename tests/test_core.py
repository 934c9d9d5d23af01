"""The bottom layer (bayesglmm.core): names, argument checks, the arviz adapter."""

from types import SimpleNamespace

import numpy as np
import pytest

from bayesglmm.core import (
    ParamName,
    bracket_name,
    check_delta,
    check_init,
    check_int,
    check_seed,
    inference_data,
    is_hidden_stan_name,
    log_lik_names,
    resolve_params,
    sd_name,
)


def test_bracket_name():
    assert bracket_name("beta.2") == "beta[2]"
    assert bracket_name("corr_1.1.2") == "corr_1[1,2]"
    assert bracket_name("sigma") == "sigma"


def test_sd_name_with_one_and_several_terms():
    assert sd_name(1, 1, "Subject", "Int", False) == ParamName("sd_1[1]", "sd[Subject:Int]", "sd")
    assert sd_name(2, 3, "item", "x", True) == ParamName("sd_2[3]", "sd_2[item:x]", "sd")


def test_hidden_names_and_log_lik():
    assert is_hidden_stan_name("lp__") and is_hidden_stan_name("log_lik[3]")
    assert not is_hidden_stan_name("beta[1]")
    assert log_lik_names(["beta[1]", "log_lik[1]", "log_lik[2]"]) == ["log_lik[1]", "log_lik[2]"]


def test_resolve_params_declared_and_external():
    prog = SimpleNamespace(params=(ParamName("beta[1]", "b[x]", "b"), ParamName("sigma", "sigma", "family")))
    assert [p.user for p in resolve_params(prog, ["lp__", "sigma", "beta[1]"])] == ["b[x]", "sigma"]
    with pytest.raises(RuntimeError, match="lacks quantities"):
        resolve_params(prog, ["beta[1]"])
    ext = SimpleNamespace(params=())
    assert resolve_params(ext, ["lp__", "mu", "log_lik[1]"]) == [ParamName("mu", "mu", "stan")]


def test_check_int_and_seed():
    assert check_int("chains", np.int64(3), 1) == 3
    for bad in (0, True, 2.0, "4"):
        with pytest.raises(ValueError, match="chains must be an integer >= 1"):
            check_int("chains", bad, 1)
    assert check_seed(None) is None and check_seed(2**31 - 2) == 2**31 - 2
    for bad in (-1, 2**31 - 1, False, 1.5):
        with pytest.raises(ValueError, match="seed must be None or an integer"):
            check_seed(bad)


def test_check_delta_and_init():
    assert check_delta(0.9) == 0.9
    for bad in (0, 1, True, "0.9"):
        with pytest.raises(ValueError, match="delta"):
            check_delta(bad)
    assert check_init(None) is None and check_init(2) == 2.0 and check_init({"a": 1}) == {"a": 1}
    with pytest.raises(ValueError, match="init radius"):
        check_init(-1.0)
    with pytest.raises(ValueError, match="got list"):
        check_init([1.0])


def test_inference_data_groups():
    post = {"b[x]": np.arange(6.0).reshape(2, 3)}
    stats = {"diverging": np.array([[0, 1, 0], [0, 0, 0]])}
    idata = inference_data(post, stats, log_lik=np.zeros((2, 3, 4)), observed=np.ones(4))
    assert idata.posterior["b[x]"].shape == (2, 3)
    assert idata.sample_stats["diverging"].dtype == bool
    assert int(idata.sample_stats["diverging"].sum()) == 1
    assert idata.log_likelihood["y"].shape == (2, 3, 4)
    assert list(idata.observed_data["y"].values) == [1.0] * 4
