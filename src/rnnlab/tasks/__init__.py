"""The lab's tasks, by name. Each is a short recipe over the shared data, model and trainer."""

from __future__ import annotations

import difflib

from rnnlab.errors import RnnlabError
from rnnlab.tasks.addition import Addition
from rnnlab.tasks.air_quality import AirQuality
from rnnlab.tasks.base import Task
from rnnlab.tasks.electric_devices import ElectricDevices
from rnnlab.tasks.forecast import Forecast
from rnnlab.tasks.sentiment import Sentiment
from rnnlab.tasks.series import SeriesClassification
from rnnlab.tasks.text_classification import TextClassification
from rnnlab.tasks.text_generation import TextGeneration
from rnnlab.tasks.tsv_pairs import Pairs

TASKS: dict[str, type[Task]] = {
    t.name: t
    for t in (
        AirQuality,
        ElectricDevices,
        Sentiment,
        TextGeneration,
        Addition,
        Pairs,
        SeriesClassification,
        Forecast,
        TextClassification,
    )
}


def get_task(name: str) -> type[Task]:
    """The task class called ``name``; an unknown name is an error that suggests the closest."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RnnlabError(f"unknown task {name!r}: {hint}tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = [
    "TASKS",
    "Addition",
    "AirQuality",
    "ElectricDevices",
    "Forecast",
    "Pairs",
    "Sentiment",
    "SeriesClassification",
    "Task",
    "TextClassification",
    "TextGeneration",
    "get_task",
]
