"""Example data sets shipped with bayesglmm (see README.md in this folder for sources and licences)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_debate", "load_sleepstudy"]


def _path(name: str):
    return resources.files(__name__).joinpath(name)


def load_debate() -> pd.DataFrame:
    """The debate data (BayesRTMB 0.2.4, MIT licence): 300 people in 100 three-person groups.

    Columns: ``group`` (1..100), ``sat`` (satisfaction, 1..5), ``talk`` (amount of talk, 1..5),
    ``perf`` (group performance, 1..8, constant within group), ``skill`` (1..3) and ``cond``
    (0 = control, 1 = treatment, constant within group). Simulated data.
    """
    with resources.as_file(_path("debate.csv")) as p:
        return pd.read_csv(p)


def load_sleepstudy() -> pd.DataFrame:
    """The sleepstudy data (lme4, GPL; Belenky et al. 2003): reaction times of 18 subjects
    over 10 days of sleep deprivation.

    Columns: ``Reaction`` (mean reaction time, ms), ``Days`` (0..9) and ``Subject``
    (a categorical with the level order of lme4: 308, 309, 310, ...).
    """
    with resources.as_file(_path("sleepstudy.csv")) as p:
        df = pd.read_csv(p, dtype={"Subject": str})
    levels = list(dict.fromkeys(df["Subject"]))  # order of first appearance = lme4 level order
    df["Subject"] = pd.Categorical(df["Subject"], categories=levels)
    return df
