"""Example data sets shipped with bayesglmm (see README.md in this folder for sources and licences)."""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_debate", "load_sleepstudy", "load_training", "load_wine"]


def _path(name: str):
    return resources.files(__name__).joinpath(name)


def load_debate() -> pd.DataFrame:
    """The debate data (BayesRTMB 0.2.4, MIT licence): 300 people in 100 three-person groups.

    Columns: ``group`` (1..100), ``sat`` (satisfaction, 1..5), ``talk`` (amount of talk, 1..5),
    ``perf`` (group performance, 1..8, constant within group), ``skill`` (1..3) and ``cond``
    (0 = control, 1 = treatment, constant within group). Simulated data.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import bayesglmm
    >>> len(bayesglmm.load_debate()) > 0
    True
    """
    with resources.as_file(_path("debate.csv")) as p:
        return pd.read_csv(p)


def load_sleepstudy() -> pd.DataFrame:
    """The sleepstudy data (lme4, GPL; Belenky et al. 2003): reaction times of 18 subjects
    over 10 days of sleep deprivation.

    Columns: ``Reaction`` (mean reaction time, ms), ``Days`` (0..9) and ``Subject``
    (a categorical with the level order of lme4: 308, 309, 310, ...).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import bayesglmm
    >>> len(bayesglmm.load_sleepstudy()) > 0
    True
    """
    with resources.as_file(_path("sleepstudy.csv")) as p:
        df = pd.read_csv(p, dtype={"Subject": str})
    levels = list(dict.fromkeys(df["Subject"]))  # order of first appearance = lme4 level order
    df["Subject"] = pd.Categorical(df["Subject"], categories=levels)
    return df


def load_training() -> pd.DataFrame:
    """The training data (BayesRTMB 0.2.4, MIT licence): wide repeated measures of 12 people.

    Columns: ``ID`` (OBS01..OBS12), ``time1``..``time4`` (outcome at four occasions), ``a``
    (0 = control, 1 = intervention), ``b`` (baseline class A/B/C) and ``age``. Simulated data;
    the example of ``cbind(time1, time2, time3, time4) ~ a * time + (1 | ID)`` with
    ``within={"time": 4}``.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import bayesglmm
    >>> len(bayesglmm.load_training()) > 0
    True
    """
    with resources.as_file(_path("training.csv")) as p:
        return pd.read_csv(p)


def load_wine() -> pd.DataFrame:
    """The wine data (R package ordinal, GPL; Randall 1989): bitterness ratings of white wine,
    72 ratings by 9 judges.

    Columns: ``response`` (bitterness score, 0..100), ``rating`` (the score in five ordered
    categories, 1..5), ``temp`` (temperature, cold / warm), ``contact`` (skin contact during
    pressing, no / yes), ``bottle`` (1..8) and ``judge`` (1..9). ``temp`` and ``contact`` are
    categoricals in that level order; ``bottle`` and ``judge`` categoricals of their numbers.
    The example of ``ordinal::clmm(rating ~ temp + contact + (1 | judge))``.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import bayesglmm
    >>> wine = bayesglmm.load_wine()
    >>> len(wine), list(wine["temp"].cat.categories)
    (72, ['cold', 'warm'])
    """
    with resources.as_file(_path("wine.csv")) as p:
        df = pd.read_csv(p, dtype={"bottle": str, "judge": str})
    df["temp"] = pd.Categorical(df["temp"], categories=["cold", "warm"])
    df["contact"] = pd.Categorical(df["contact"], categories=["no", "yes"])
    for c in ("bottle", "judge"):
        df[c] = pd.Categorical(df[c], categories=sorted(df[c].unique(), key=int))
    return df
